"""The customer's language: detection, the choice kept in the session's context, and what a
reply or an extraction is told about it (docs/LANGUAGES.md)."""
