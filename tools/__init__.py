"""Tools for people, outside the runtime package (not installed): the demo, the Grafana
dashboard generator and its SVG preview. Run from the repository root: ``python -m tools.demo``.
"""
