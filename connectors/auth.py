"""Verifying that a delivery comes from the tool: an HMAC of the raw body, or a shared token.

Compared in constant time (:func:`hmac.compare_digest`) over bytes, so a header that is not
ASCII is a plain mismatch. The answer names what is wrong (missing header, bad signature,
no secret configured) and never the secret or the expected value.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from connectors.mapping import header
from connectors.model import Auth, AuthScheme


def signature(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``secret`` (what GitHub and Jira send)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def refusal(auth: Auth, secret: str | None, headers: Mapping[str, str], body: bytes) -> str | None:
    """Why the delivery is refused (401), or ``None`` when it is authentic.

    Args:
        auth: the connector's scheme and header.
        secret: the configured secret; ``None`` or empty refuses every delivery.
        headers: the request headers (names case-insensitive).
        body: the raw request body, exactly as received.
    """
    if not secret:
        return f"{auth.secret_env} is not set: this connector refuses every delivery"
    given = header(headers, auth.header)
    if given is None:
        return f"missing {auth.header} header"
    given = given.strip()
    if auth.scheme is AuthScheme.HMAC:
        expected = auth.prefix + signature(secret, body)
        ok = hmac.compare_digest(_bytes(given.lower()), _bytes(expected))
        return None if ok else f"{auth.header} does not match the body signed with the secret"
    if auth.scheme is AuthScheme.BEARER:
        scheme, _, given = given.partition(" ")
        if scheme.lower() != "bearer":
            return f"{auth.header} must be 'Bearer <token>'"
        given = given.strip()
    ok = hmac.compare_digest(_bytes(given), _bytes(secret))
    return None if ok else f"{auth.header} is not the configured token"
