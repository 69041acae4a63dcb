"""``GET``/``POST /workflows/{name}/plan``: the dry run of a posted workflow definition.

The body is the new definition (YAML or JSON, at most the API's body limit); nothing is
changed. The answer is :meth:`engine.evolve.migration.Plan.to_dict`: each feature of that workflow
with its stage now, after migration, after a full replay of its log (embedded: the SQLite
event log; streaming: the events topic, see :mod:`engine.streaming.replan`) and the risk
reasons that would appear or clear. 400 for a definition that does not compile or names
another workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import yaml
from aiohttp import web

from engine.evolve.migration import Plan, make_plan
from engine.http import jsonbody
from engine.http.errors import api_error
from engine.http.ports import Reader
from events.errors import Problem
from workflows.errors import WorkflowError
from workflows.loader import Workflows, compile_definition
from workflows.model import Workflow

Planner = Callable[[Workflow, Workflows, datetime], Plan]
"""Makes the plan from the engine's own data (embedded: its file, log included)."""
Replayer = Callable[[Workflow], Awaitable[tuple[dict[str, str], str | None]]]
"""Each feature's stage after a replay of the log under a new definition, and what the
replay could not cover (``None``: nothing); the streaming workers' events topic."""


def add_plan_routes(
    app: web.Application,
    *,
    reader: Reader,
    workflows: Workflows,
    clock: Callable[[], datetime],
    planner: Planner | None = None,
    replayer: Replayer | None = None,
) -> None:
    """Serve the plan route on ``app``.

    Args:
        planner: runs in a thread of its own; ``None``: the plan is made from ``reader``'s
            features, with the replay column from ``replayer``.
        replayer: replays the log under the new definition (``None``: no log to read, the
            replay column stays empty).
    """

    async def plan(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            text = (await request.read()).decode("utf-8")
        except UnicodeDecodeError as err:
            raise api_error(
                400, "bad workflow", [Problem("body", f"not UTF-8 text: {err.reason}")]
            ) from err
        if not text.strip():
            raise api_error(
                400, "no definition", [Problem("body", "send the new workflow YAML as the body")]
            )
        try:
            new = compile_definition(yaml.safe_load(text), "body")
        except (WorkflowError, yaml.YAMLError, RecursionError) as err:
            raise api_error(400, "bad workflow", [Problem("body", str(err))]) from err
        if new.name != name:
            raise api_error(
                400,
                "bad workflow",
                [Problem("name", f"the body defines {new.name!r}, not {name!r}")],
            )
        now = clock()
        if planner is not None:
            result = await asyncio.get_running_loop().run_in_executor(
                None, planner, new, workflows, now
            )
        else:
            states = await reader.features()
            replayed, incomplete = await replayer(new) if replayer is not None else (None, None)
            result = make_plan(new, workflows, states, now, replayed, incomplete)
        return jsonbody.answer(result.to_dict())

    app.router.add_get("/workflows/{name}/plan", plan)
    app.router.add_post("/workflows/{name}/plan", plan)
