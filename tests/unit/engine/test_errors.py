"""One exception tree: every deliberate error of the project is a LifecycleError."""

from __future__ import annotations

import pytest

from engine.cli import main as cli
from engine.demo import run as demo
from engine.report import status as report
from events import errors
from events.errors import LifecycleError
from workflows import errors as workflow_errors


@pytest.mark.parametrize(
    "error",
    [
        cli.CliError,
        report.ReportError,
        demo.SimulationError,
        workflow_errors.WorkflowError,
        workflow_errors.UnknownWorkflow,
        errors.MalformedEvent,
        errors.StoreError,
        errors.ConnectorError,
        errors.EmitFailed,
    ],
)
def test_every_deliberate_error_is_a_lifecycle_error(error: type[Exception]) -> None:
    assert issubclass(error, LifecycleError)
