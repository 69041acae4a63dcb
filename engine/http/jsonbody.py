"""Every JSON body the HTTP API answers, encoded one way: :func:`encode`, sent by :func:`answer`.

One encoder for every route (features, history, hooks, errors, plans, the report), so a
client sees the same bytes for the same value whichever route carries it: compact (no
spaces), non-ASCII text as UTF-8, strict JSON (no ``NaN`` or ``Infinity``). orjson writes it,
about five times the standard library's speed on a page of 500 features. What orjson refuses
goes to the standard library's encoder with the same separators: a lone surrogate in a row
stored before such text was refused (written as an escape, which keeps the body valid UTF-8),
an integer beyond 64 bits. A float that is not finite never gets this far (the edge refuses
it, DESIGN.md rule 10); if one did, orjson would write ``null`` and the fallback would raise,
never a body a strict parser refuses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

CONTENT_TYPE = "application/json"
"""The media type of every JSON answer (with ``charset=utf-8``)."""


def encode(value: Any) -> bytes:
    """``value`` (JSON-able: dicts, lists, strings, numbers, booleans, ``None``) as JSON."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def answer(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """``value`` as a JSON answer (what every handler returns instead of
    ``web.json_response``, whose encoder puts spaces after separators)."""
    return body_answer(encode(value), status, headers)


def body_answer(
    body: bytes, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer from ``body``, already encoded by :func:`encode` (or assembled from
    parts it encoded, as ``GET /features`` does with each feature's view)."""
    return web.Response(
        body=body, status=status, headers=headers, content_type=CONTENT_TYPE, charset="utf-8"
    )
