"""Named guards that workflow YAML may refer to.

A guard is a plain Python function ``(feature, event) -> bool``: ``True`` lets the transition
happen. YAML names guards; it never holds code. A refused transition is ``rejected`` with the
reason ``guard:<name>``. Register your own with :func:`guard` before loading workflows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol


class GuardedFeature(Protocol):
    """What a guard may read of a feature."""

    @property
    def risks(self) -> Mapping[str, Any]: ...


Guard = Callable[[GuardedFeature, Any], bool]

GUARDS: dict[str, Guard] = {}


def guard(name: str) -> Callable[[Guard], Guard]:
    """Register ``fn`` under ``name`` so a workflow can list it in a transition's ``guards``."""

    def register(fn: Guard) -> Guard:
        GUARDS[name] = fn
        return fn

    return register


@guard("critical_risk")
def no_open_critical_risk(feature: GuardedFeature, event: Any) -> bool:
    """Passes unless the feature has an open risk of severity ``critical``."""
    return not any(risk.severity == "critical" for risk in feature.risks.values())
