"""Dramatiq workers: broker setup, per-conversation drain actors, scheduler and enqueue script."""
