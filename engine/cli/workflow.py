"""``lifecycle workflow plan|apply``, ``lifecycle replay`` and ``lifecycle import``.

Plan and apply work on the embedded mode's SQLite file (``LIFECYCLE_DB`` or ``--db``): plan
reads it read-only (also while the engine serves it), apply needs the engine stopped (the
file's lock says so otherwise). ``plan --url`` asks a running engine instead (either mode).
Import sends the events of an NDJSON file to a running engine through ``POST /events``, the
path live events take. Progress goes to stderr; results to stdout (``--json`` for scripts).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from engine.config.settings import Settings

PROGRESS_WIDTH = 30
IMPORT_BATCH = 200
"""Events per ``POST /events`` batch of an import (well under the 1 MiB body limit)."""


class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal, or forced)."""

    def __init__(self, total: int | None, what: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.what = what
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def __call__(self, done: int) -> None:
        if not self.live:
            return
        if self.total:
            filled = PROGRESS_WIDTH * min(done, self.total) // self.total
            bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
            self.stream.write(f"\r{self.what} [{bar}] {done:,}/{self.total:,}")
        else:
            self.stream.write(f"\r{self.what} {done:,}")
        self.stream.flush()

    def end(self) -> None:
        if self.live:
            self.stream.write("\n")


def _now() -> datetime:
    return datetime.now(UTC)


def _load(args: argparse.Namespace, settings: Settings) -> tuple[Any, Any]:
    """The new definition of ``args.file`` and the workflows the engine runs now."""
    from workflows.loader import Workflows, load_file, load_folder

    new = load_file(args.file)
    current = Workflows(load_folder(settings.workflows))
    return new, current


def cmd_plan(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from engine.evolve.migration import render_plan

    new, current = _load(args, settings)
    if args.url:
        from engine.cli.main import request_json

        doc = request_json(
            args.url,
            "POST",
            f"/workflows/{new.name}/plan",
            body=Path(args.file).read_bytes(),
            headers={"Content-Type": "application/yaml"},
        )
    else:
        from engine.evolve.apply import plan_from_file

        doc = plan_from_file(args.db or settings.db, new, current, _now()).to_dict()
    if args.json:
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        out.write(render_plan(doc))
    return 0 if doc["ok"] else 1


def cmd_apply(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from engine.evolve.apply import apply_workflows, with_workflow
    from engine.stores.sqlite import SqliteStore

    new, current = _load(args, settings)
    db = args.db or settings.db
    store = SqliteStore(db)  # refused while an engine holds the file
    try:
        done = apply_workflows(store, with_workflow(current, new), _now())
    finally:
        store.close()
    moved = Counter((o.from_stage, o.to_stage) for o in done if o.from_stage != o.to_stage)
    doc = {
        "workflow": new.name,
        "version": new.version,
        "migrated": len(done),
        "moved": [{"from": a, "to": b, "features": n} for (a, b), n in sorted(moved.items())],
    }
    if args.json:
        out.write(json.dumps(doc, indent=2) + "\n")
        return 0
    if not done:
        out.write(f"nothing to do: every feature of {new.name!r} is at version {new.version}\n")
    else:
        out.write(f"migrated {len(done)} features of {new.name!r} to version {new.version}\n")
        for (a, b), n in sorted(moved.items()):
            out.write(f"  {a} -> {b}: {n}\n")
    folder = settings.workflows
    inside = folder is not None and Path(args.file).resolve().parent == Path(folder).resolve()
    if not inside:
        out.write(
            f"next: put {args.file} in the workflows folder (LIFECYCLE_WORKFLOWS) before the "
            "engine starts again; it refuses an older version than this one\n"
        )
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    import sqlite3

    from engine.evolve.apply import recorded_workflow, with_workflow
    from engine.evolve.rebuild import rebuild
    from engine.stores.sqlite_log import EventLog
    from workflows.loader import Workflows, load_file, load_folder

    workflows = Workflows(load_folder(settings.workflows))
    if args.workflow:
        workflows = with_workflow(workflows, load_file(args.workflow))
    live = args.db or settings.db
    total = None
    recorded: dict[Any, Any] = {}
    try:
        with sqlite3.connect(Path(live).resolve().as_uri() + "?mode=ro", uri=True) as conn:
            total = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
            recorded = EventLog(conn).recorded_versions()
    except sqlite3.Error:
        pass  # rebuild names the problem
    if args.version is not None:
        name = args.name or workflows.default.name
        workflows = with_workflow(workflows, recorded_workflow(recorded, name, args.version))
    progress = Progress(total, "replaying")
    started = datetime.now(UTC)
    result = rebuild(live, args.into, workflows, _now(), progress=progress)
    progress.end()
    seconds = (datetime.now(UTC) - started).total_seconds()
    doc = {
        "events": result.replayed.events,
        "seconds": round(seconds, 3),
        "outcomes": dict(result.replayed.outcomes),
        "features": result.features,
        "same": result.same,
        "differences": [{"feature": d.feature, "fields": d.fields} for d in result.differences],
        "into": str(args.into),
    }
    if args.json:
        out.write(json.dumps(doc, indent=2, default=str) + "\n")
        return 0
    rate = result.replayed.events / seconds if seconds > 0 else 0.0
    out.write(
        f"replayed {result.replayed.events:,} events into {args.into} in {seconds:.1f}s "
        f"({rate:,.0f} events/s): "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(result.replayed.outcomes.items()))
        + "\n"
    )
    out.write(
        f"{result.features:,} features rebuilt, {result.same:,} as live, "
        f"{len(result.differences):,} differ\n"
    )
    for d in result.differences[: args.show]:
        fields = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in d.fields.items())
        out.write(f"  {d.feature}: {fields}\n")
    if len(result.differences) > args.show:
        out.write(f"  ... and {len(result.differences) - args.show:,} more (--json lists all)\n")
    return 0


def _lines(path: str) -> Iterable[str]:
    if path == "-":
        yield from sys.stdin
        return
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        yield from f


def read_ndjson(
    lines: Iterable[str], known: frozenset[str], now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The valid CloudEvents of NDJSON ``lines`` in event-time order (stable: a feature's
    events keep their order), and the refused lines with their reasons.

    Events without ``time`` count as happening now, so they come last.
    """
    from events.envelope import decode_json, validate_event
    from events.errors import MalformedEvent

    keep: list[tuple[datetime, int, dict[str, Any]]] = []
    refused: list[dict[str, Any]] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            raw = decode_json(text.encode("utf-8", errors="surrogateescape"))
            event = validate_event(raw, known, now)
        except MalformedEvent as err:
            reasons = [f"{p.field}: {p.reason}" if p.field else p.reason for p in err.problems]
            refused.append({"line": number, "reasons": reasons, "text": text.rstrip("\n")})
            continue
        at = event.time if event is not None else now
        keep.append((at, number, raw))
    keep.sort(key=lambda k: (k[0], k[1]))
    return [raw for _, _, raw in keep], refused


def cmd_import(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from engine.cli.main import CliError, request_json
    from workflows.loader import Workflows, load_folder

    known = Workflows(load_folder(settings.workflows)).event_types
    try:
        events, refused = read_ndjson(_lines(args.file), known, _now())
    except OSError as err:
        raise CliError(f"cannot read {args.file}: {err.strerror}") from err
    refused_path = Path(
        args.refused or ("import-refused.ndjson" if args.file == "-" else f"{args.file}.refused")
    )
    if refused:
        with refused_path.open("w", encoding="utf-8", errors="surrogateescape") as f:
            for line in refused:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
    base = args.url or settings.url
    headers = {"Content-Type": "application/cloudevents-batch+json"}
    token = args.token if args.token is not None else settings.api_token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    outcomes: Counter[str] = Counter()
    progress = Progress(len(events), "importing")
    for start in range(0, len(events), args.batch):
        batch = events[start : start + args.batch]
        body = json.dumps(batch).encode()
        receipts = request_json(base, "POST", "/events", body=body, headers=headers)
        outcomes.update(r.get("outcome", "?") for r in receipts)
        progress(start + len(batch))
    progress.end()
    doc = {
        "events": len(events),
        "outcomes": dict(outcomes),
        "refused": len(refused),
        "refused_file": str(refused_path) if refused else None,
    }
    if args.json:
        out.write(json.dumps(doc, indent=2) + "\n")
        return 0
    out.write(
        f"imported {len(events):,} events in event-time order: "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items())) or "none")
        + "\n"
    )
    if refused:
        out.write(f"refused {len(refused):,} lines, with their reasons, in {refused_path}\n")
    return 0


def add_workflow_commands(wsub: Any, common: argparse.ArgumentParser) -> None:
    """``plan`` and ``apply`` under ``lifecycle workflow``."""
    w = wsub.add_parser(
        "plan", parents=[common], help="show what a new workflow version would do (dry run)"
    )
    w.add_argument("file", help="the new workflow YAML")
    w.add_argument("--db", help="the engine's SQLite file (LIFECYCLE_DB)")
    w.add_argument("--url", help="ask a running engine instead (either mode)")
    w.set_defaults(run=cmd_plan)
    w = wsub.add_parser(
        "apply", parents=[common], help="migrate the features to a new workflow version"
    )
    w.add_argument("file", help="the new workflow YAML")
    w.add_argument("--db", help="the engine's SQLite file (LIFECYCLE_DB); stop the engine first")
    w.set_defaults(run=cmd_apply)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """``replay`` and ``import``."""
    p = sub.add_parser("replay", parents=[common], help="rebuild state from the event log")
    p.add_argument("--into", required=True, help="the new SQLite file to build (must not exist)")
    p.add_argument("--db", help="the live SQLite file (LIFECYCLE_DB)")
    p.add_argument("--workflow", help="replay under this workflow file (default: the loaded)")
    p.add_argument(
        "--version", type=int, help="replay under this version the file ran, as it was recorded"
    )
    p.add_argument("--name", help="the workflow --version is of (default: the default one)")
    p.add_argument("--show", type=int, default=20, help="differences to print (default 20)")
    p.set_defaults(run=cmd_replay)
    p = sub.add_parser("import", parents=[common], help="bring history in from NDJSON")
    p.add_argument("file", help="CloudEvents, one JSON object a line; - for stdin")
    p.add_argument("--url", help="base URL of the engine (default: from LIFECYCLE_HTTP_*)")
    p.add_argument("--token", help="API token (default: LIFECYCLE_API_TOKEN)")
    p.add_argument("--refused", help="where to write refused lines (default: FILE.refused)")
    p.add_argument("--batch", type=int, default=IMPORT_BATCH, help="events per request")
    p.set_defaults(run=cmd_import)
