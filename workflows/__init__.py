"""Lifecycle definitions (YAML) and their compiler onto ``transitions``."""

from workflows.guards import GUARDS, guard
from workflows.loader import Workflows, compile_definition, load_file, load_folder
from workflows.model import Move, Reject, Transition, Update, Workflow

__all__ = [
    "GUARDS",
    "Move",
    "Reject",
    "Transition",
    "Update",
    "Workflow",
    "Workflows",
    "compile_definition",
    "guard",
    "load_file",
    "load_folder",
]
