"""The HTTP API of DESIGN.md section 5, as an aiohttp application built from plain arguments.

``POST /events`` takes the CloudEvents HTTP binding in its three forms (structured, batch and
binary). Every event of a request is parsed and validated before any is handed on, so a
request with one bad event is refused whole with every problem listed and nothing stored.
Reads are open; when a token is configured only ``POST /events`` needs
``Authorization: Bearer <token>``. Handlers are thin: they parse, call a port, render a view.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.core.state import FeatureState
from engine.http import jsonbody
from engine.http.board import add_board_routes
from engine.http.clock import NOW_HEADER
from engine.http.errors import api_error, error_middleware
from engine.http.hooks import Hooks, add_hook_routes
from engine.http.limits import (
    HISTORY_PAGE,
    MAX_BODY,
    MAX_HISTORY_PAGE,
    MAX_PAGE,
    MAX_POSITION,
    PAGE,
)
from engine.http.openapi import openapi_document
from engine.http.plan import Planner, Replayer, add_plan_routes
from engine.http.ports import Incoming, Ingest, Reader
from engine.http.serving import connection_middleware
from engine.http.views import Assess, feature_view, workflow_view
from events.builder import rfc3339
from events.envelope import BATCH, STRUCTURED, decode_http, utc_now
from events.errors import MalformedEvent, Problem
from metrics.bundle import LifecycleMetrics
from workflows.loader import Workflows

INGEST = web.AppKey("ingest", Ingest)
READER = web.AppKey("reader", Reader)
WORKFLOWS = web.AppKey("workflows", Workflows)
METRICS = web.AppKey("metrics", LifecycleMetrics)
TOKEN = web.AppKey("api_token", str)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
ASSESS: web.AppKey[Assess] = web.AppKey("assess")
YIELD_EVERY = 10
"""Features whose views a page builds (about 1 ms of work) before it lets writes through."""
Readiness = Callable[[], Awaitable[list[str]]]
"""What still keeps an engine from serving truthfully; empty when it is ready."""
READINESS: web.AppKey[Readiness] = web.AppKey("readiness")
WritesFirst = Callable[[], Awaitable[None]]
"""What a long read awaits between its steps to let the writes that are ready go first."""
WRITES_FIRST: web.AppKey[WritesFirst] = web.AppKey("writes_first")


async def always_ready() -> list[str]:
    """The embedded engine's readiness: it serves once its database is open."""
    return []


async def _one_turn() -> None:
    """Let the other requests ready to run go (the default of ``writes_first``)."""
    await asyncio.sleep(0)


def build_app(
    *,
    ingest: Ingest,
    reader: Reader,
    workflows: Workflows,
    metrics: LifecycleMetrics,
    api_token: str | None = None,
    assess: Assess,
    clock: Callable[[], datetime] = utc_now,
    readiness: Readiness = always_ready,
    hooks: Hooks | None = None,
    planner: Planner | None = None,
    replayer: Replayer | None = None,
    writes_first: WritesFirst = _one_turn,
) -> web.Application:
    """The application serving every route of the API.

    Args:
        ingest: where the valid events of ``POST /events`` go.
        reader: where features and histories are read.
        workflows: the loaded definitions (known event types, SLAs, ``GET /workflows``).
        metrics: the bundle whose registry ``GET /metrics`` exposes; refused requests are
            counted in its ``dead_letters`` counter.
        api_token: when set, ``POST /events`` needs ``Authorization: Bearer <api_token>``.
        clock: the current UTC time (receive times, time in stage); tests may fix it.
        assess: a feature's risk reasons and launch forecast (the risk monitor's
            :meth:`~engine.risk.monitor.RiskMonitor.assessment`, so the API agrees with
            ``lifecycle_features_at_risk``).
        readiness: what ``GET /readyz`` asks (a streaming worker: partitions assigned and
            recovered, broker reachable).
        hooks: the webhook connectors of ``POST /hooks/{connector}`` (``None``: none).
        planner: makes the dry run of ``/workflows/{name}/plan`` (see
            :func:`engine.http.plan.add_plan_routes`).
        replayer: the replay column of that plan when ``planner`` is ``None`` (a streaming
            worker replays the events topic).
        writes_first: what ``GET /features`` awaits every :data:`YIELD_EVERY` features to
            let writes through (the embedded ingest's
            :meth:`~engine.http.local.EngineIngest.writes_first`); default: one turn of
            the event loop.
    """
    app = web.Application(
        client_max_size=MAX_BODY, middlewares=[connection_middleware, error_middleware]
    )
    app[INGEST] = ingest
    app[READER] = reader
    app[WORKFLOWS] = workflows
    app[METRICS] = metrics
    app[TOKEN] = api_token or ""
    app[CLOCK] = clock
    app[ASSESS] = assess
    app[READINESS] = readiness
    app[WRITES_FIRST] = writes_first
    app.on_response_prepare.append(_stamp_clock)
    app.add_routes(
        [
            web.post("/events", post_events),
            web.get("/features", list_features),
            web.get("/features/{id}", get_feature),
            web.get("/features/{id}/history", get_history),
            web.get("/workflows", list_workflows),
            web.get("/workflows/{name}", get_workflow),
            web.get("/metrics", get_metrics),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/openapi.json", get_openapi),
        ]
    )
    add_board_routes(app, reader=reader, workflows=workflows, clock=clock, assess=assess)
    add_plan_routes(
        app, reader=reader, workflows=workflows, clock=clock, planner=planner, replayer=replayer
    )
    add_hook_routes(
        app,
        hooks or Hooks(),
        ingest=ingest,
        metrics=metrics,
        known_types=workflows.event_types,
        clock=clock,
    )
    return app


async def _stamp_clock(request: web.Request, response: web.StreamResponse) -> None:
    """Put the engine's clock on ``response`` (:data:`NOW_HEADER`), errors and files too."""
    response.headers[NOW_HEADER] = rfc3339(request.app[CLOCK]())


def _refuse(
    request: web.Request, status: int, reason: str, error: str, details: list[Problem]
) -> web.HTTPException:
    request.app[METRICS].dead_letters.labels(reason).inc()
    return api_error(status, error, details)


def _authorize(request: web.Request) -> None:
    token = request.app[TOKEN]
    if not token:
        return
    given = request.headers.get("Authorization", "")
    scheme, _, credential = given.partition(" ")
    # Bytes, not text: a header that is not ASCII (kept by aiohttp as surrogate escapes)
    # must be a plain mismatch, and compare_digest refuses non-ASCII text.
    given_bytes = credential.strip().encode("utf-8", errors="surrogateescape")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, token.encode()):
        raise api_error(
            401,
            "unauthorized",
            [Problem("Authorization", "send the API token as 'Authorization: Bearer <token>'")],
            headers={"WWW-Authenticate": 'Bearer realm="lifecycle"'},
        )


def _media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _binary(request: web.Request) -> bool:
    """Whether the request carries ``ce-*`` headers (binary mode)."""
    return any(name.lower().startswith("ce-") for name in request.headers)


async def _incoming(request: web.Request, received_at: datetime) -> tuple[list[Incoming], bool]:
    """Every event of the request, validated, and whether it was a batch.

    Raises:
        MalformedEvent: every problem of every event in the request.
        HTTPException: 413 (too large) or 415 (not a CloudEvents content type).
    """
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _refuse(
            request,
            413,
            "too_large",
            "request body too large",
            [Problem("body", f"{request.content_length} bytes; the limit is {MAX_BODY} (1 MiB)")],
        )
    media = _media_type(request)
    if media not in (STRUCTURED, BATCH) and not _binary(request):
        raise _refuse(
            request,
            415,
            "unsupported_media_type",
            "unsupported content type",
            [
                Problem(
                    "Content-Type",
                    f"{media or 'none'} is not a CloudEvents mode: send {STRUCTURED}, {BATCH}, "
                    "or the event's data with ce-* headers (binary mode)",
                )
            ],
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise _refuse(
            request,
            413,
            "too_large",
            "request body too large",
            [Problem("body", f"over the limit of {MAX_BODY} bytes (1 MiB)")],
        ) from err
    known = request.app[WORKFLOWS].event_types
    found = decode_http(body, media, request.headers, known, received_at)
    return [Incoming(r.raw, r.event) for r in found], media == BATCH


async def post_events(request: web.Request) -> web.Response:
    """``POST /events``: 202 with one receipt (a list for a batch), or a 4xx in error shape."""
    _authorize(request)
    received_at = request.app[CLOCK]()
    try:
        incoming, batch = await _incoming(request, received_at)
    except MalformedEvent as err:
        what = "batch" if _media_type(request) == BATCH else "event"
        raise _refuse(request, 400, "malformed", f"malformed {what}", err.problems) from err
    receipts = await request.app[INGEST](incoming, received_at)
    return jsonbody.answer(receipts if batch else receipts[0], 202)


def _flag(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise api_error(400, "bad query", [Problem(name, f"must be true or false, not {raw!r}")])


def _int(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise api_error(
            400, "bad query", [Problem(name, f"must be a whole number {low}-{high}, not {raw!r}")]
        )
    return int(raw)


async def list_features(request: web.Request) -> web.Response:
    """``GET /features``: ``{"features": [...], "next": cursor | null}``, sorted by id.

    Query: ``limit`` (1-:data:`MAX_PAGE`, default :data:`PAGE`), ``cursor`` (the ``next`` of
    the previous page), filters ``stage``, ``product``, ``owner``, ``q`` (text in id, title,
    product or owner) applied by the reader (in SQL for the SQLite store), and
    ``at_risk=true|false`` (risk is judged now, so that one is applied here, page by page).
    """
    workflows = request.app[WORKFLOWS]
    stage = request.query.get("stage") or None
    at_risk = _flag(request, "at_risk")
    limit = _int(request, "limit", PAGE, 1, MAX_PAGE)
    assert limit is not None
    if stage is not None and not any(stage in w.stages for w in workflows.by_name.values()):
        raise api_error(400, "bad query", [Problem("stage", f"no workflow has a stage {stage!r}")])
    filters = {
        name: request.query.get(name) or None for name in ("product", "owner", "q", "cursor")
    }
    after = filters.pop("cursor")
    now = request.app[CLOCK]()
    judge = request.app[ASSESS]
    reader = request.app[READER]
    writes_first = request.app[WRITES_FIRST]
    views: list[bytes] = []
    last: str | None = None
    while len(views) <= limit:
        states = await reader.features(stage=stage, after=after, limit=limit + 1, **filters)
        for i, s in enumerate(states):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await writes_first()  # a page is tens of ms of work
            workflow = workflows.by_name.get(s.workflow)
            assessment = judge(s, now)
            if at_risk is None or bool(assessment.reasons) is at_risk:
                if len(views) == limit:
                    return _page(views, last)
                views.append(jsonbody.encode(feature_view(s, workflow, now, assessment)))
                last = s.id
        if len(states) <= limit:
            break
        after = states[-1].id
    return _page(views, None)


def _page(views: list[bytes], cursor: str | None) -> web.Response:
    """The answer of ``GET /features`` from the features' views, each already encoded: the
    bytes :func:`jsonbody.encode` writes for the whole page."""
    body = b'{"features":[' + b",".join(views) + b'],"next":' + jsonbody.encode(cursor)
    return jsonbody.body_answer(body + b"}")


async def _known(request: web.Request) -> FeatureState:
    feature_id = request.match_info["id"]
    state = await request.app[READER].feature(feature_id)
    if state is None:
        raise api_error(404, "unknown feature", [Problem("id", f"no feature {feature_id!r}")])
    return state


async def get_feature(request: web.Request) -> web.Response:
    """``GET /features/{id}``: the feature with its risk reasons now; 404 when unknown."""
    state = await _known(request)
    workflow = request.app[WORKFLOWS].by_name.get(state.workflow)
    now = request.app[CLOCK]()
    assessment = request.app[ASSESS](state, now)
    return jsonbody.answer(feature_view(state, workflow, now, assessment))


async def get_history(request: web.Request) -> web.Response:
    """``GET /features/{id}/history?limit=&before=``: ``{"id", "entries", "before"}``.

    Entries oldest first: the last ``limit`` (default :data:`HISTORY_PAGE`) before position
    ``before`` (1 = the oldest entry; default: after the newest). The answer's ``before``
    is the value for the page of older entries, ``null`` when there are none. 404 unknown.
    """
    limit = _int(request, "limit", HISTORY_PAGE, 1, MAX_HISTORY_PAGE)
    before = _int(request, "before", None, 1, MAX_POSITION)
    state = await _known(request)
    page = await request.app[READER].history(state.id, limit=limit, before=before)
    entries = [e.to_dict() for e in page.entries]
    return jsonbody.answer({"id": state.id, "entries": entries, "before": page.before})


async def list_workflows(request: web.Request) -> web.Response:
    """``GET /workflows``: ``{"workflows": [...], "default": name}``, each with its diagram."""
    workflows = request.app[WORKFLOWS]
    views = [workflow_view(w) for _, w in sorted(workflows.by_name.items())]
    return jsonbody.answer({"workflows": views, "default": workflows.default.name})


async def get_workflow(request: web.Request) -> web.Response:
    """``GET /workflows/{name}``: one definition with its Mermaid diagram; 404 unknown."""
    name = request.match_info["name"]
    workflow = request.app[WORKFLOWS].by_name.get(name)
    if workflow is None:
        raise api_error(404, "unknown workflow", [Problem("name", f"no workflow {name!r}")])
    return jsonbody.answer(workflow_view(workflow))


async def get_metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text exposition of the metrics registry."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def get_openapi(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the OpenAPI 3.1 document of this API."""
    workflows = request.app[WORKFLOWS]
    stages = (s for w in workflows.by_name.values() for s in w.stages)
    year = request.app[CLOCK]().year
    return jsonbody.answer(openapi_document(stages, workflows.event_types, year))


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 while the process serves requests."""
    return jsonbody.answer({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when the engine can answer truthfully; 503 with the reasons
    (and ``Retry-After``) while it cannot, e.g. a worker still recovering its partitions."""
    problems = await request.app[READINESS]()
    if problems:
        raise api_error(
            503, "not ready", [Problem("", p) for p in problems], headers={"Retry-After": "1"}
        )
    return jsonbody.answer({"status": "ready"})
