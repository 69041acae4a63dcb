"""The ``lifecycle`` command: run the engine, send events, read features, check workflows.

The CLI is an edge: it reads :class:`~engine.config.settings.Settings` once and passes plain values
on. Output is for people by default (aligned tables, a few lines per feature) and JSON with
``--json``. Every failure exits non-zero with one line on stderr saying what to do, e.g.
``cannot reach the engine at http://127.0.0.1:8000: Connection refused``.

Exit codes: 0 success, 1 a failure (engine unreachable, refused request, bad workflow),
2 bad usage or settings, 3 an event the engine took but did not apply (``rejected`` or
``ignored``: the line on stderr says why, with "did you mean ...?" for a misspelt type and the
events the feature's stage allows), 141 the reader of the output went away (``| head``).
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from pydantic import ValidationError

from engine.config.kafka_security import KafkaSecurity, check_connection
from engine.config.settings import Settings
from engine.http.clock import NOW_HEADER
from events.builder import cloud_event
from events.errors import LifecycleError, MalformedEvent

DEFAULT_SOURCE = "cli/lifecycle"
NOT_APPLIED = 3
"""Exit status of ``emit`` when the engine answered ``rejected`` or ``ignored``."""
BROKEN_PIPE = 141
"""Exit status when stdout is closed early (``lifecycle list | head``), as for SIGPIPE."""
TIMEOUT = 10.0
"""Seconds the CLI waits for the engine to answer."""


class CliError(LifecycleError):
    """A failure to report as one line on stderr; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


Command = Callable[[argparse.Namespace, Settings, TextIO], int]


# --- talking to a running engine ---------------------------------------------------------


def _describe_error(status: int, body: bytes) -> str:
    try:
        doc = json.loads(body)
        details = "; ".join(
            f"{d['field']}: {d['reason']}" if d.get("field") else str(d["reason"])
            for d in doc.get("details", [])
        )
        return f"{status} {doc['error']}" + (f": {details}" if details else "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{status} {body[:200].decode('utf-8', errors='replace')}"


def request_json(
    base: str,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """Send one request to the engine at ``base`` and decode its JSON answer.

    Raises:
        CliError: the engine is unreachable, or it answered an error (the message holds the
            error and every detail).
    """
    return request_timed(base, method, path, body=body, headers=headers)[0]


def request_timed(
    base: str,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[Any, datetime]:
    """:func:`request_json`, with the engine's clock when it answered.

    Ages are measured on that clock (the ``Lifecycle-Now`` header), as the engine measures
    SLAs and risk: during ``lifecycle demo`` it runs far behind this machine's clock. An
    engine without the header (an older version) is taken to run on this machine's clock.

    Raises:
        CliError: as :func:`request_json`.
    """
    url = base.rstrip("/") + path
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return json.loads(resp.read()), _engine_clock(resp.headers.get(NOW_HEADER))
    except urllib.error.HTTPError as err:
        raise CliError(_describe_error(err.code, err.read())) from err
    except urllib.error.URLError as err:
        reason = getattr(err.reason, "strerror", None) or str(err.reason)
        raise CliError(f"cannot reach the engine at {base}: {reason}") from err
    except (TimeoutError, ConnectionError) as err:
        raise CliError(f"cannot reach the engine at {base}: {err}") from err
    except ValueError as err:
        raise CliError(f"the engine at {base} answered something that is not JSON") from err


def _engine_clock(stamp: str | None) -> datetime:
    try:
        return datetime.fromisoformat((stamp or "").replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return datetime.now(UTC)


def _quote(feature_id: str) -> str:
    return urllib.parse.quote(feature_id, safe="")


# --- formatting ---------------------------------------------------------------------------


def _table(rows: list[list[str]], out: TextIO) -> None:
    """Print ``rows`` (the first is the header) as left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def _since(text: str | None, now: datetime) -> str:
    """``3d 4h`` since an RFC 3339 time; empty when unknown."""
    if not text:
        return ""
    seconds = max(0, int((now - datetime.fromisoformat(text)).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {rest // 60}m"
    return f"{rest // 60}m {rest % 60}s"


def _dump(doc: Any, out: TextIO) -> None:
    out.write(json.dumps(doc, indent=2) + "\n")


# --- commands -----------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from engine.embedded.root import run_embedded

    update = {
        k: v
        for k, v in {
            "http_host": args.host,
            "http_port": args.port,
            "db": args.db,
            "workflows": args.workflows,
        }.items()
        if v is not None
    }
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_embedded(settings.model_copy(update=update))
    return 0


def _run_entry(module: str, name: str, what: str, settings: Settings) -> int:
    """Import ``module.name`` lazily and run it with ``settings`` (sync or async)."""
    import asyncio
    import importlib

    try:
        entry = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise CliError(f"lifecycle {what} is not available in this install: {err}") from err
    result = entry(settings)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return int(result or 0)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def cmd_demo(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from engine.demo.run import run_demo

    return run_demo(
        settings,
        speed=args.speed,
        features=args.features,
        days=args.days,
        seed=args.seed,
        keep=args.keep,
        live=args.live,
    )


def cmd_worker(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    _kafka_security(settings)  # bad settings: one line before anything starts
    return _run_entry("engine.streaming.worker", "run_worker", "worker", settings)


def _kafka_security(settings: Settings) -> KafkaSecurity:
    try:
        return settings.kafka_security()
    except ValueError as err:
        raise CliError(f"bad Kafka security setting: {err}", code=2) from err


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as err:
        raise CliError(
            f"--time {text!r} is not an RFC 3339 time like 2024-05-01T12:00:00Z"
        ) from err
    if moment.tzinfo is None:
        raise CliError(f"--time {text!r} needs a timezone, e.g. 2024-05-01T12:00:00Z")
    return moment.astimezone(UTC)


def _parse_data(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise CliError(f"--data is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise CliError('--data must be a JSON object, e.g. \'{"build": "1.4.2"}\'')
    return data


def cmd_emit(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    data = _parse_data(args.data)
    moment = _parse_time(args.time)
    event_id = args.id or str(uuid.uuid4())
    if args.kafka:
        return _emit_kafka(args, settings, out, data, moment, event_id)
    event = cloud_event(
        args.type,
        args.feature,
        id=event_id,
        source=args.source,
        time=moment,
        data=data,
        datacontenttype=None,
        # The CloudEvents extension a new feature reads its workflow from.
        extensions={"workflow": args.workflow} if args.workflow else None,
    )
    headers = {"Content-Type": "application/cloudevents+json"}
    token = args.token if args.token is not None else settings.api_token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    base = args.url or settings.url
    receipt = request_json(
        base, "POST", "/events", body=json.dumps(event).encode(), headers=headers
    )
    outcome, stage, reason = receipt.get("outcome"), receipt.get("stage"), receipt.get("reason")
    if args.json:
        _dump(receipt, out)
    else:
        line = f"{outcome}: {args.feature}"
        if stage:
            line += f" is in {stage}"
        if reason:
            line += f" ({reason})"
        out.write(line + "\n")
    if outcome in (REJECTED, IGNORED):
        sys.stderr.write(f"lifecycle: {_not_applied(base, args.type, receipt)}\n")
        return NOT_APPLIED
    return 0


REJECTED = "rejected"
IGNORED = "ignored"


def _not_applied(base: str, event_type: str, receipt: dict[str, Any]) -> str:
    """Why an event was ``rejected`` or ``ignored``, and what to send instead (one line)."""
    try:
        workflows = request_json(base, "GET", "/workflows")["workflows"]
    except (CliError, KeyError, TypeError):
        workflows = []
    if receipt.get("outcome") == IGNORED:
        known = sorted({t for w in workflows for t in w.get("event_types", ())})
        text = f"{event_type} was ignored: no workflow of the engine knows that event type"
        close = difflib.get_close_matches(event_type, known, n=1, cutoff=0.6)
        if close:
            return f"{text}; did you mean {close[0]}?"
        return text + (f" (known: {', '.join(known)})" if known else "")
    stage, reason = receipt.get("stage"), receipt.get("reason")
    text = f"{event_type} was rejected ({reason}): {receipt.get('feature')} is in {stage}"
    feature = receipt.get("feature")
    try:
        name = request_json(base, "GET", f"/features/{_quote(str(feature))}")["workflow"]
    except (CliError, KeyError, TypeError):
        return text
    workflow = next((w for w in workflows if w.get("name") == name), None)
    if workflow is None or not isinstance(stage, str):
        return text
    allowed = allowed_from(workflow, stage)
    if not allowed:
        return f"{text}, where no event moves it any more"
    return f"{text}; from {stage} the workflow {name!r} moves on {', '.join(allowed)}"


def allowed_from(workflow: dict[str, Any], stage: str) -> list[str]:
    """The events that move a feature on from ``stage``, by a workflow's ``GET /workflows``
    view: its listed transitions from there, and skips ahead that pass no gate (rule 4 and 5
    of the processing rules)."""
    order = [s["name"] for s in workflow.get("stages", ()) if s.get("ordered")]
    position = {name: i for i, name in enumerate(order)}
    gates = set(workflow.get("gates", ()))
    found: list[str] = []
    for t in workflow.get("transitions", ()):
        sources, dest = set(t.get("from", ())), t.get("to")
        if stage in sources:
            found.append(t["event"])
        elif stage in position and dest in position and position[dest] > position[stage]:
            passed = set(order[position[stage] + 1 : position[dest]])
            if not (passed & gates) or (sources & gates):
                found.append(t["event"])
    return list(dict.fromkeys(found))


def _emit_kafka(
    args: argparse.Namespace,
    settings: Settings,
    out: TextIO,
    data: dict[str, Any] | None,
    moment: datetime | None,
    event_id: str,
) -> int:
    import asyncio

    from events.emitter import Emitter

    servers = settings.broker.removeprefix("kafka://").replace(";", ",")
    security = _kafka_security(settings)
    if security.protocol != "PLAINTEXT":  # say why a handshake fails, not just "timed out"
        asyncio.run(check_connection(servers, security))
    with Emitter(
        servers,
        source=args.source,
        topic=settings.events_topic,
        producer_config=security.kafka_python(),
    ) as emitter:
        extensions = {"workflow": args.workflow} if args.workflow else None
        sent = emitter.emit(
            args.type,
            args.feature,
            data,
            id=event_id,
            time=moment,
            extensions=extensions,
            wait=False,
        )
        delivery = sent.get()
    if args.json:
        _dump(
            {
                "id": event_id,
                "topic": delivery.topic,
                "partition": delivery.partition,
                "offset": delivery.offset,
            },
            out,
        )
    else:
        out.write(
            f"sent {args.type} for {args.feature} to {delivery.topic} "
            f"partition {delivery.partition} offset {delivery.offset} (id {event_id})\n"
        )
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    base = args.url or settings.url
    f, now = request_timed(base, "GET", f"/features/{_quote(args.feature)}")
    if args.json:
        _dump(f, out)
        return 0
    name = f" {f['title']!r}" if f.get("title") else ""
    about = ", ".join(
        f"{k} {f[k]}" for k in ("product", "owner", "priority") if f.get(k) is not None
    )
    out.write(f"{f['id']}{name}" + (f" ({about})" if about else "") + "\n")
    out.write(
        f"  stage     {f['stage']} since {f['entered_stage_at']} "
        f"({_since(f['entered_stage_at'], now)}), workflow {f['workflow']}\n"
    )
    risk = "yes: " + ", ".join(f["risk_reasons"]) if f.get("at_risk") else "no"
    out.write(f"  at risk   {risk}\n")
    if f.get("blocked"):
        out.write(f"  blocked   {f.get('blocked_reason') or 'yes'}\n")
    for r in f.get("open_risks", []):
        out.write(
            f"  risk      {r['risk_id']} {r['severity']}"
            + (f" {r['title']!r}" if r.get("title") else "")
            + "\n"
        )
    if f.get("target_launch"):
        out.write(f"  target    {f['target_launch']}\n")
    if f.get("uat_failures"):
        out.write(f"  uat fails {f['uat_failures']}\n")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    base = args.url or settings.url
    query = {
        k: v
        for k, v in {
            "stage": args.stage,
            "product": args.product,
            "at_risk": "true" if args.at_risk else None,
        }.items()
        if v
    }
    path = "/features" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    answer, now = request_timed(base, "GET", path)
    features = answer["features"]
    if args.json:
        _dump(features, out)
        return 0
    if not features:
        out.write("no features\n")
        return 0
    rows = [["ID", "STAGE", "PRODUCT", "IN STAGE", "RISK", "TITLE"]]
    for f in features:
        rows.append(
            [
                f["id"],
                f["stage"],
                f.get("product") or "-",
                _since(f.get("entered_stage_at"), now),
                ",".join(f.get("risk_reasons", [])) or "-",
                f.get("title") or "",
            ]
        )
    _table(rows, out)
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    """``lifecycle report``: print the engine's ``GET /report`` as Markdown or HTML."""
    base = args.url or settings.url
    query = {"since": args.since, "format": "json" if args.json else args.format}
    if args.product:
        query["product"] = args.product
    url = f"{base.rstrip('/')}/report?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            text = resp.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        raise CliError(_describe_error(err.code, err.read())) from err
    except urllib.error.URLError as err:
        reason = getattr(err.reason, "strerror", None) or str(err.reason)
        raise CliError(f"cannot reach the engine at {base}: {reason}") from err
    except (TimeoutError, ConnectionError) as err:
        raise CliError(f"cannot reach the engine at {base}: {err}") from err
    if args.json:
        try:
            _dump(json.loads(text), out)
        except ValueError as err:
            raise CliError(f"the engine at {base} answered something that is not JSON") from err
        return 0
    out.write(text if text.endswith("\n") else text + "\n")
    return 0


def _workflows(settings: Settings) -> Any:
    from workflows.loader import load_folder

    return load_folder(settings.workflows)


def cmd_workflow_validate(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from workflows.loader import load_file

    workflow = load_file(args.file)
    transitions = sum(len(ts) for ts in workflow.moving.values())
    if args.json:
        _dump({"ok": True, "name": workflow.name, "stages": list(workflow.stages)}, out)
    else:
        out.write(
            f"OK: {args.file} defines workflow {workflow.name!r} "
            f"({len(workflow.stages)} stages, {transitions} transitions)\n"
        )
    return 0


def cmd_workflow_diagram(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from workflows.diagram import mermaid

    loaded = _workflows(settings)
    if args.name not in loaded:
        raise CliError(f"unknown workflow {args.name!r} (known: {', '.join(sorted(loaded))})")
    text = mermaid(loaded[args.name])
    if args.json:
        _dump({"name": args.name, "mermaid": text}, out)
    else:
        out.write(text)
    return 0


def cmd_workflow_list(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    """``lifecycle workflow list``: what the running engine loaded (``GET /workflows``), or
    with ``--local`` what the files of ``LIFECYCLE_WORKFLOWS`` here would load."""
    from engine.http.views import workflow_view

    if args.local:
        loaded = _workflows(settings)
        views = [workflow_view(w) | {"source": w.source} for _, w in sorted(loaded.items())]
        where = "SOURCE"
    else:
        base = args.url or settings.url
        try:
            doc = request_json(base, "GET", "/workflows")
        except CliError as err:
            raise CliError(f"{err} (--local lists the workflow files here instead)") from err
        views = doc["workflows"]
        where = "DEFAULT"
        for v in views:
            v["source"] = "yes" if v["name"] == doc.get("default") else ""
    if args.json:
        _dump([{k: v for k, v in view.items() if k != "source"} for view in views], out)
        return 0
    rows = [["NAME", "STAGES", where, "DESCRIPTION"]]
    for v in views:
        rows.append([v["name"], str(len(v["stages"])), v["source"], v.get("description") or ""])
    _table(rows, out)
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from events.schema import envelope_schema, event_schema, json_schemas

    if args.asyncapi:
        from engine.docs.asyncapi import asyncapi_document

        if args.type is not None:
            raise CliError("--asyncapi describes every topic: give no event type", code=2)
        _dump(
            asyncapi_document(
                events_topic=settings.events_topic,
                transitions_topic=settings.transitions_topic,
                dlq_topic=settings.dlq_topic,
                partitions=settings.partitions,
            ),
            out,
        )
    elif not args.json and args.type != "envelope":
        from engine.docs.catalogue import listing
        from workflows.loader import Workflows

        rows = listing(Workflows(_workflows(settings)))
        if args.type is not None:
            rows = [rows[0], *(r for r in rows[1:] if r[0] == args.type)]
            if len(rows) == 1:
                known = ", ".join(r[0] for r in listing(Workflows(_workflows(settings)))[1:])
                raise CliError(f"unknown event type {args.type!r} (known: {known})")
        _table(rows, out)
        if args.type is None:
            out.write(
                "\n* required. Every field: docs/events.md; the JSON Schema: lifecycle schema "
                "--json [TYPE|envelope]\n"
            )
    elif args.type is None:
        _dump(json_schemas(), out)
    elif args.type == "envelope":
        _dump(envelope_schema(), out)
    else:
        try:
            _dump(event_schema(args.type), out)
        except KeyError:
            known = ", ".join(sorted(json_schemas()["events"]))
            raise CliError(f"unknown event type {args.type!r} (known: envelope, {known})") from None
    return 0


# --- parser -------------------------------------------------------------------------------


def _described(add_parser: Callable[..., Any]) -> Callable[..., Any]:
    """``add_parser`` that also shows a subcommand's ``help`` as its ``--help`` description."""

    def add(name: str, **kwargs: Any) -> Any:
        if "help" in kwargs and "description" not in kwargs:
            text = kwargs["help"]
            kwargs["description"] = text[:1].upper() + text[1:] + "."
        return add_parser(name, **kwargs)

    return add


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other failure."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {self.prog} --help)", code=2)


def build_parser() -> argparse.ArgumentParser:
    """The ``lifecycle`` argument parser; each subcommand sets ``run`` to its function."""
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    remote = _Parser(add_help=False)
    remote.add_argument("--url", help="base URL of the engine (default: from LIFECYCLE_HTTP_*)")

    parser = _Parser(
        prog="lifecycle",
        description="Event-driven product lifecycle engine.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser = _described(sub.add_parser)  # type: ignore[method-assign]

    p = sub.add_parser("serve", parents=[common], help="run the embedded engine (HTTP + SQLite)")
    p.add_argument("--host", help="address to listen on (LIFECYCLE_HTTP_HOST)")
    p.add_argument("--port", type=int, help="port to listen on (LIFECYCLE_HTTP_PORT)")
    p.add_argument("--db", help="SQLite file (LIFECYCLE_DB)")
    p.add_argument("--workflows", help="folder of workflow YAML files (LIFECYCLE_WORKFLOWS)")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("demo", parents=[common], help="run the engine with a simulated portfolio")
    from engine.demo.run import add_arguments as add_demo_arguments

    add_demo_arguments(p)
    p.set_defaults(run=cmd_demo)
    p = sub.add_parser("worker", parents=[common], help="run a streaming worker (Kafka)")
    p.set_defaults(run=cmd_worker)

    p = sub.add_parser("emit", parents=[common, remote], help="send one event to the engine")
    p.add_argument("type", help="event type, e.g. build.shipped")
    p.add_argument("feature", help="feature id (the CloudEvent subject)")
    p.add_argument("--data", help='event data as a JSON object, e.g. \'{"build": "1.4.2"}\'')
    p.add_argument("--source", default=DEFAULT_SOURCE, help=f"event source ({DEFAULT_SOURCE})")
    p.add_argument("--id", help="event id (default: a new UUID); resend an id to test dedup")
    p.add_argument("--time", help="business time, RFC 3339 (default: when received)")
    p.add_argument("--token", help="API token (default: LIFECYCLE_API_TOKEN)")
    p.add_argument("--kafka", action="store_true", help="send to Kafka (LIFECYCLE_BROKER)")
    p.add_argument(
        "--workflow",
        help="the workflow a new feature follows (the CloudEvents extension attribute "
        "'workflow'; read from a feature's first event only; default: the engine's default)",
    )
    p.epilog = (
        "Exits 0 when the event was applied, updated or a duplicate, 3 when it was rejected "
        "or ignored (with why on stderr), 1 when it could not be sent."
    )
    p.set_defaults(run=cmd_emit)

    p = sub.add_parser("status", parents=[common, remote], help="show one feature")
    p.add_argument("feature", help="feature id")
    p.set_defaults(run=cmd_status)

    p = sub.add_parser("list", parents=[common, remote], help="list features")
    p.add_argument("--stage", help="only features in this stage")
    p.add_argument("--product", help="only features of this product")
    p.add_argument("--at-risk", action="store_true", help="only features at risk")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("report", parents=[common, remote], help="print a status report for PMs")
    p.add_argument("--since", default="7d", help="window: 7d, 36h, 2w or a date (default 7d)")
    p.add_argument("--product", help="only this product")
    p.add_argument("--format", choices=["markdown", "html"], default="markdown")
    p.set_defaults(run=cmd_report)

    p = sub.add_parser("workflow", help="check and show workflow definitions")
    wsub = p.add_subparsers(dest="workflow_command", required=True, parser_class=_Parser)
    wsub.add_parser = _described(wsub.add_parser)
    w = wsub.add_parser("validate", parents=[common], help="check a workflow YAML file")
    w.add_argument("file")
    w.set_defaults(run=cmd_workflow_validate)
    w = wsub.add_parser("diagram", parents=[common], help="print a workflow as Mermaid")
    w.add_argument("name")
    w.set_defaults(run=cmd_workflow_diagram)
    w = wsub.add_parser(
        "list", parents=[common, remote], help="list the workflows the running engine loaded"
    )
    w.add_argument(
        "--local", action="store_true", help="list the workflow files here (LIFECYCLE_WORKFLOWS)"
    )
    w.set_defaults(run=cmd_workflow_list)
    from engine.cli.workflow import add_commands as add_evolve_commands
    from engine.cli.workflow import add_workflow_commands

    add_workflow_commands(wsub, common)
    add_evolve_commands(sub, common)

    from engine.cli.connectors import add_commands as add_connector_commands

    add_connector_commands(sub, common, _Parser)

    p = sub.add_parser(
        "schema",
        parents=[common],
        help="list the event types, what each does and its data (--json: the JSON Schema)",
    )
    p.add_argument("type", nargs="?", help="one event type, or 'envelope' (default: all)")
    p.add_argument(
        "--asyncapi", action="store_true", help="print the AsyncAPI 3.0 document of the topics"
    )
    p.set_defaults(run=cmd_schema)
    return parser


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        name = "LIFECYCLE_" + "_".join(str(p) for p in first["loc"]).upper()
        raise CliError(f"bad setting {name}: {first['msg']}", code=2) from err


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the ``lifecycle`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status; on failure one line goes to stderr.
    """
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(argv)
        command: Command = args.run
        return command(args, _settings(), out)
    except CliError as err:
        sys.stderr.write(f"lifecycle: {err}\n")
        return err.code
    except MalformedEvent as err:
        sys.stderr.write(f"lifecycle: malformed event: {err}\n")
        return 1
    except LifecycleError as err:
        sys.stderr.write(f"lifecycle: {err}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep the interpreter's final
        # flush of stdout from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
