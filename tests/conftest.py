"""Fixtures shared by every test tier.

``workflows``: the loaded built-in workflows (a :class:`workflows.loader.Workflows`).
``feature_workflow``: the compiled default ``feature`` workflow.
``make_event``: :func:`tests.factories.make_event`, a builder of valid typed events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.factories import make_event as _make_event
from workflows.loader import Workflows, load_folder
from workflows.model import Workflow


@pytest.fixture(scope="session")
def workflows() -> Workflows:
    return Workflows(load_folder())


@pytest.fixture(scope="session")
def feature_workflow(workflows: Workflows) -> Workflow:
    return workflows.default


@pytest.fixture
def make_event() -> Callable[..., Any]:
    return _make_event
