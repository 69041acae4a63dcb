"""Field paths: where a value sits in a webhook payload, written as text in a connector file.

A path is segments joined by dots, read left to right from the payload's top object:

* ``release.tag_name``: a key of an object;
* ``pull_request.labels.*.name``: ``*`` takes every element of a list (or value of an object);
* ``commits.0.message``: a number takes one element of a list;
* ``changelog.items[field=status].toString``: ``[key=value]`` keeps the elements of a list
  whose ``key`` equals ``value`` (as text).

Resolving a path gives every value found, in payload order (none when a key is missing).
Paths are parsed once, when a connector is loaded; nothing in them is ever evaluated as code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_SEGMENT = re.compile(r"^(?P<key>[^.\[\]]*)(?:\[(?P<fkey>[^=\]]+)=(?P<fvalue>[^\]]*)\])?$")


@dataclass(frozen=True, slots=True)
class Step:
    """One segment of a path: a key (or ``*``, or an index), then an optional filter."""

    key: str
    filter_key: str | None = None
    filter_value: str | None = None


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A parsed field path; :meth:`values` resolves it against a payload."""

    text: str
    steps: tuple[Step, ...]

    def values(self, payload: Any) -> list[Any]:
        """Every value at this path in ``payload`` (empty when any step finds nothing)."""
        found = [payload]
        for step in self.steps:
            found = [v for item in found for v in _step(item, step)]
        return [v for v in found if v is not None]

    def first(self, payload: Any) -> Any:
        """The first value at this path, or ``None``."""
        values = self.values(payload)
        return values[0] if values else None

    def __str__(self) -> str:
        return self.text


def _step(item: Any, step: Step) -> Iterator[Any]:
    if step.key == "*":
        if isinstance(item, list):
            picked: list[Any] = item
        elif isinstance(item, dict):
            picked = list(item.values())
        else:
            picked = []
    elif isinstance(item, dict):
        picked = [item[step.key]] if step.key in item else []
    elif isinstance(item, list) and step.key.isdigit():
        index = int(step.key)
        picked = [item[index]] if index < len(item) else []
    else:
        picked = []
    if step.filter_key is None:
        yield from picked
        return
    for value in picked:
        elements = value if isinstance(value, list) else [value]
        for element in elements:
            if (
                isinstance(element, dict)
                and _text(element.get(step.filter_key)) == step.filter_value
            ):
                yield element


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_path(text: Any) -> FieldPath:
    """Parse ``text`` as a field path.

    Raises:
        ValueError: not a path (empty, a segment with bad brackets); the message says why.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{text!r} is not a field path like pull_request.head.ref")
    steps = []
    for segment in text.strip().split("."):
        m = _SEGMENT.match(segment)
        if m is None or not m.group("key"):
            raise ValueError(
                f"{text!r}: segment {segment!r} is not a key, '*', an index or key[field=value]"
            )
        steps.append(Step(m.group("key"), m.group("fkey"), m.group("fvalue")))
    return FieldPath(text.strip(), tuple(steps))
