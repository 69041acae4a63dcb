"""The event catalogue and the processing rules as a page a user reads (``docs/events.md``).

Generated from the code so it cannot drift: the event types and their ``data`` fields come
from :data:`events.catalogue.CATALOGUE` (types, required fields, allowed values), the moves
from the default workflow's compiled definition. The processing rules are the contract's
(DESIGN.md section 4) in a user's words. ``python -m engine.docs.catalogue > docs/events.md``
writes the page; a unit test fails when the file differs from what this module renders, and
``lifecycle schema`` prints the same listing in a terminal.
"""

from __future__ import annotations

import types
import typing
from datetime import date
from typing import Any

from events.catalogue import CATALOGUE, data_model
from workflows.loader import Workflows, load_folder
from workflows.model import Workflow

EXAMPLES: dict[str, Any] = {
    "title": "Apple Pay at checkout",
    "product": "payments",
    "owner": "amara.okafor",
    "acceptance_criteria": ["pays in one tap", "refunds work"],
    "priority": 1,
    "target_launch": "2026-03-31",
    "build": "1.4.2",
    "reason": "totals wrong on iOS",
    "risk_id": "R-7",
    "severity": "high",
    "sentiment": "positive",
    "name": "adoption_rate",
    "value": 0.42,
}
"""An example value per ``data`` field name."""

RULES = """\
## Processing rules

Every event gets exactly one outcome:

| outcome | meaning |
|---|---|
| `applied` | the feature moved to another stage |
| `updated` | the feature changed, its stage did not |
| `duplicate` | this (`source`, `id`) already changed the feature: nothing happens |
| `rejected` | a valid event the feature cannot take; `reason` says why |
| `ignored` | the type is in no workflow (the engine shares topics and webhooks) |

Malformed input never reaches a feature: HTTP answers 400 listing every problem, Kafka sends
it to `lifecycle.events.dlq` with the reason in a header.

1. **Per feature, in order.** A feature's events are applied one at a time, in arrival order.
2. **Idempotent.** A (`source`, `id`) that already changed the feature is a `duplicate`. A
   rejected event may be sent again and is judged again.
3. **Unknown feature.** `idea.submitted` creates it; any other catalogue event creates it at
   `idea` (recorded in its history) and is then applied. `idea.submitted` for a feature that
   exists sets its title, product and owner (`updated`). A feature follows the workflow named
   by the CloudEvents extension attribute `workflow` of its first event (default: `feature`).
4. **Skip ahead, never back.** An event applies from a stage it does not list when its target
   stage lies later in the stage order; the stages passed over are recorded as `skipped`. A move
   to an earlier or the same stage happens only through a listed transition (`uat.failed`,
   `iteration.started`); otherwise `rejected` (`invalid_transition`).
5. **Gates.** A gate stage (`uat`) may only be passed by the event that leaves it
   (`uat.passed`); any other skip over it is `rejected` (`gate:uat`). `uat.passed` on a feature
   in `development` moves it to `launch_ready` with `uat` recorded as skipped.
6. **Guards.** `feature.launched` with an open `critical` risk is `rejected`
   (`guard:critical_risk`).
7. **Terminal.** In `cancelled` every further event is `rejected` (`terminal`).
8. **Event time.** Stage durations use the event `time` and are never negative: a move dated
   before the current stage's entry counts as happening at that entry. The lead time is taken
   when a feature first reaches `launched`, from its creation.
9. **History.** Every outcome but `ignored` is kept in the feature's history (`event_id`,
   `source`, `type`, `time`, `received_at`, `outcome`, `from_stage`, `to_stage`, `skipped`,
   `reason`), with the engine's own signals (`feature.at_risk`, `feature.risk_cleared`) under
   `source` `lifecycle/engine`.
10. **Sane values.** `time` lies between 1970 and one day ahead of the engine's clock; numbers
    are finite; text is valid Unicode; dates are real dates. Anything else is malformed.
"""


def _type_name(annotation: Any) -> str:
    """A field's JSON type in words: ``string``, ``number``, ``date``, ``list of string``, ..."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " / ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    names = {str: "string", float: "number", int: "number", date: "date (YYYY-MM-DD)"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def fields(event_type: str) -> list[tuple[str, str, bool, Any]]:
    """``(field, type, required, default)`` of ``event_type``'s ``data``, in declared order."""
    out = []
    for name, info in data_model(event_type).model_fields.items():
        default = None if info.is_required() else info.default
        out.append((name, _type_name(info.annotation), info.is_required(), default))
    return out


def moves(workflow: Workflow, event_type: str) -> str:
    """What ``event_type`` does to a feature of ``workflow``, in words."""
    if event_type == workflow.create_event:
        return f"creates the feature at `{workflow.initial}`; later: `updated`"
    listed = workflow.moving.get(event_type, ())
    if listed:
        parts = []
        for t in listed:
            sources = sorted(t.sources, key=lambda s: workflow.order.get(s, len(workflow.order)))
            if set(sources) >= {s for s in workflow.stages if s not in workflow.terminal} - {
                t.dest
            }:
                where = "any stage but " + ", ".join(
                    f"`{s}`" for s in workflow.stages if s in workflow.terminal
                )
            else:
                where = ", ".join(f"`{s}`" for s in sources)
            text = f"{where} -> `{t.dest}`"
            if t.rework:
                text += " (rework)"
            if t.repeat_updates:
                text += f"; again in `{t.dest}`: `updated`"
            if t.guards:
                text += " unless " + ", ".join(f"`{name}`" for name, _ in t.guards)
            parts.append(text)
        return "; ".join(parts)
    if event_type in workflow.updates:
        return "no move"
    return "not in this workflow"


def example(event_type: str) -> str:
    """A structured CloudEvent of ``event_type`` as one JSON line."""
    import json

    data = {name: EXAMPLES.get(name, "...") for name, _, _, _ in fields(event_type)}
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "ci/build-service",
        "type": event_type,
        "subject": "PAY-123",
        "time": "2026-01-05T09:00:00Z",
    }
    if data:
        event["data"] = data
    return json.dumps(event)


def listing(workflows: Workflows) -> list[list[str]]:
    """Rows (with a header) of every catalogue type: what it does and its data fields."""
    workflow = workflows.default
    rows = [["TYPE", f"IN WORKFLOW {workflow.name!r}", "DATA"]]
    for event_type in CATALOGUE:
        data = ", ".join(
            f"{name}{'*' if required else ''} ({kind.replace('`', '')})"
            for name, kind, required, _ in fields(event_type)
        )
        rows.append([event_type, moves(workflow, event_type).replace("`", ""), data or "-"])
    return rows


def render(workflows: Workflows | None = None) -> str:
    """The whole ``docs/events.md`` page."""
    workflows = workflows or Workflows(load_folder(None))
    workflow = workflows.default
    order = [s for s in workflow.stages if s in workflow.order]
    out = [
        "# Events and processing rules",
        "",
        "<!-- Generated by `python -m engine.docs.catalogue > docs/events.md`; a unit test",
        "     checks this file against the code. Do not edit by hand. -->",
        "",
        "Events are [CloudEvents 1.0](https://cloudevents.io) (structured JSON, batches, HTTP",
        "binary mode with `ce-*` headers, Kafka binary mode with `ce_*` headers). `subject` is",
        "the feature id (1-128 characters of `A-Za-z0-9._:-`, starting with a letter or digit);",
        "`time` is when it happened (RFC 3339; missing: when the engine received it); `data` is",
        "a JSON object whose fields are all optional unless marked required. Fields the engine",
        "does not read are kept out of the model, never refused.",
        "",
        f"The default workflow `{workflow.name}`: "
        + " -> ".join(f"`{s}`" for s in order)
        + (
            "; also " + ", ".join(f"`{s}`" for s in workflow.stages if s not in workflow.order)
            if len(order) < len(workflow.stages)
            else ""
        )
        + ".",
        "",
        "## Catalogue",
        "",
        "| type | moves | data |",
        "|---|---|---|",
    ]
    for event_type in CATALOGUE:
        data = "<br>".join(
            f"`{name}`: {kind}"
            + (" (required)" if required else "")
            + (f", default `{default}`" if default is not None else "")
            for name, kind, required, default in fields(event_type)
        )
        out.append(f"| `{event_type}` | {moves(workflow, event_type)} | {data or '-'} |")
    out += ["", "## Examples", ""]
    for event_type in CATALOGUE:
        out += [f"`{event_type}`:", "", "```json", example(event_type), "```", ""]
    out.append(RULES)
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
