"""Wiring of the webhook connectors, shared by both composition roots.

Loads and checks every connector at start-up (a bad file stops the engine with file, place
and fault), gives each its secret from the settings, and says once which connectors refuse
every delivery because their secret is unset.
"""

from __future__ import annotations

from collections.abc import Iterable

from connectors.loader import load_folder
from engine.http.hooks import Hooks
from engine.settings import Settings


def build_hooks(settings: Settings, event_types: Iterable[str]) -> Hooks:
    """The connectors of ``settings.connectors`` plus the shipped ones, with their secrets.

    Raises:
        ConnectorError: a connector file is bad.
    """
    connectors = load_folder(settings.connectors, event_types)
    secrets = {name: settings.secret(c.auth.secret_env) for name, c in connectors.items()}
    hooks = Hooks(connectors, secrets)
    hooks.warn_unset()
    return hooks
