"""``lifecycle connectors check [DIR]`` and ``lifecycle connectors try NAME PAYLOAD``.

``check`` loads the shipped connectors plus those of DIR (default ``LIFECYCLE_CONNECTORS``)
exactly as the engine does at start-up, and says which have a secret. ``try`` prints the
CloudEvents a payload file would produce, with no secret and without applying anything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from connectors.ledger import Ledger
from connectors.loader import load_folder
from connectors.mapping import Delivery, map_delivery
from engine.config.settings import Settings
from events.envelope import decode_json, utc_now
from events.errors import LifecycleError
from workflows.loader import Workflows
from workflows.loader import load_folder as load_workflows


def add_commands(sub: Any, common: argparse.ArgumentParser, parser_class: Any) -> None:
    """Add ``connectors check`` and ``connectors try`` to the ``lifecycle`` parser."""
    p = sub.add_parser("connectors", help="check webhook connectors, try one on a payload")
    csub = p.add_subparsers(dest="connectors_command", required=True, parser_class=parser_class)
    c = csub.add_parser("check", parents=[common], help="validate connector files")
    c.add_argument("dir", nargs="?", help="folder of connector YAML files (LIFECYCLE_CONNECTORS)")
    c.set_defaults(run=cmd_check)
    c = csub.add_parser("try", parents=[common], help="print the events a payload would produce")
    c.add_argument("connector", help="connector name, e.g. github")
    c.add_argument("payload", help="a JSON file with the webhook body")
    c.add_argument("--event", help="the delivery's event header (e.g. release; Jira: not needed)")
    c.add_argument("--dir", help="folder of connector YAML files (LIFECYCLE_CONNECTORS)")
    c.set_defaults(run=cmd_try)


def _connectors(settings: Settings, folder: str | None) -> dict[str, Any]:
    workflows = Workflows(load_workflows(settings.workflows))
    return load_folder(Path(folder) if folder else settings.connectors, workflows.event_types)


def cmd_check(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    found = _connectors(settings, args.dir)
    rows = [
        {
            "name": name,
            "kind": c.kind.value,
            "rules": len(c.rules),
            "file": c.file,
            "secret": c.auth.secret_env,
            "secret_set": settings.secret(c.auth.secret_env) is not None,
        }
        for name, c in sorted(found.items())
    ]
    if args.json:
        out.write(json.dumps({"ok": True, "connectors": rows}, indent=2) + "\n")
        return 0
    for r in rows:
        state = "set" if r["secret_set"] else "NOT SET: every delivery is refused"
        out.write(f"OK: {r['name']} ({r['kind']}, {r['rules']} rules) {r['file']}\n")
        out.write(f"    {r['secret']}: {state}\n")
    return 0


def cmd_try(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    found = _connectors(settings, args.dir)
    connector = found.get(args.connector)
    if connector is None:
        raise LifecycleError(f"no connector {args.connector!r} (known: {', '.join(sorted(found))})")
    try:
        payload = decode_json(Path(args.payload).read_bytes())
    except OSError as err:
        raise LifecycleError(f"{args.payload}: cannot read: {err.strerror}") from err
    event = args.event
    if event is None and connector.event_path is not None:
        event = connector.event_path.first(payload)
    mapped = map_delivery(connector, Delivery("try", event, payload), utc_now(), Ledger())
    out.write(
        json.dumps({"events": mapped.events, "notes": mapped.notes}, indent=2, ensure_ascii=False)
        + "\n"
    )
    return 0
