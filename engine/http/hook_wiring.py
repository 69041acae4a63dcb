"""Wiring of the webhook connectors, shared by both composition roots.

Loads and checks every connector at start-up (a bad file stops the engine with file, place
and fault) and gives each its secret from the settings. The composition root calls
:meth:`Hooks.warn_unset` once it serves, so a start-up that fails (a bad database) still
fails in one line.
"""

from __future__ import annotations

from collections.abc import Iterable

from connectors.loader import load_folder
from engine.config.settings import Settings
from engine.http.hooks import Hooks


def build_hooks(settings: Settings, event_types: Iterable[str]) -> Hooks:
    """The connectors of ``settings.connectors`` plus the shipped ones, with their secrets.

    Raises:
        ConnectorError: a connector file is bad.
    """
    connectors = load_folder(settings.connectors, event_types)
    secrets = {name: settings.secret(c.auth.secret_env) for name, c in connectors.items()}
    return Hooks(connectors, secrets)
