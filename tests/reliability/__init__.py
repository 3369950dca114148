"""Fault, load and bad-input tests against the running service (docs/RELIABILITY.md)."""
