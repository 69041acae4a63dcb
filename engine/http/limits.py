"""The sizes the HTTP API holds to: one place for the handlers and the OpenAPI document."""

from __future__ import annotations

MAX_BODY = 1024 * 1024
"""Largest request body accepted (1 MiB); larger answers 413."""
PAGE, MAX_PAGE = 500, 1000
"""Features per page of ``GET /features``: by default, and at most."""
HISTORY_PAGE, MAX_HISTORY_PAGE = 1000, 10_000
"""Entries per page of ``GET /features/{id}/history``: by default, and at most."""
MAX_POSITION = 2**62
"""Largest history position ``before`` takes (positions are SQLite integers)."""
