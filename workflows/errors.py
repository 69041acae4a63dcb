"""The workflow branch of the one exception tree (:class:`events.errors.LifecycleError`)."""

from __future__ import annotations

from events.errors import LifecycleError


class WorkflowError(LifecycleError):
    """A workflow definition that cannot be loaded; the message names file, place and fault."""


class UnknownWorkflow(LifecycleError):
    """A workflow name that no loaded definition has."""
