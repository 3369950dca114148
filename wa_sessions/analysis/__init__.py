"""What a session is about, for the operator who did not read it: its language, intent,
sentiment, a short summary, the questions left open and a next step (issue #14).

``models`` holds the analysis and what it is computed from; ``offline`` the rule-based analyser
(no network), ``openai`` the structured-output one; ``service`` reads a session, asks an
analyser and stores the answer only if the session has not changed meanwhile.
"""
