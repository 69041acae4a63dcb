"""Workflow evolution: migration plans, replay of the event log, and their I/O on SQLite."""
