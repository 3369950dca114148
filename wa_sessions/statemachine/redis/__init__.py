"""The Redis adapter behind the session store: key names, the Lua scripts (``lua/*.lua``), the
sync store, the webhook's async inbox and the status callbacks' script runner.
"""
