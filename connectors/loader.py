"""Load connector files (YAML) and check them before the engine serves a single delivery.

Called once at start-up by the composition roots and by ``lifecycle connectors check``. A bad
file raises :class:`~events.errors.ConnectorError` naming the file, the place in it and every
fault (an unknown kind or event type, a bad field path or regular expression, a rule that
names no feature place), so nothing half-checked ever maps a delivery.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from connectors.kinds import KIND_DEFAULTS
from connectors.mapping import TEMPLATE
from connectors.model import Auth, AuthScheme, Condition, Connector, Kind, Place, Rule, Value
from connectors.paths import FieldPath, parse_path
from events.errors import ConnectorError

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
"""A connector name: the ``{connector}`` of its URL."""
SECRET_ENV = re.compile(r"^LIFECYCLE_[A-Z0-9_]+$")

Fault = Callable[[str, str], None]


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _path(raw: Any, place: str, fault: Fault) -> FieldPath | None:
    try:
        return parse_path(raw)
    except ValueError as err:
        fault(place, str(err))
        return None


def _regex(raw: Any, place: str, fault: Fault) -> re.Pattern[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        fault(place, "a regular expression is text")
        return None
    try:
        return re.compile(raw)
    except re.error as err:
        fault(place, f"not a regular expression: {err}")
        return None


def _value(raw: Any, place: str, fault: Fault) -> Value | None:
    """A data field or event type: a field path, or a mapping with ``field``/``value``,
    ``pattern`` and ``map``."""
    if isinstance(raw, str):
        path = _path(raw, place, fault)
        return Value(path=path) if path else None
    if not isinstance(raw, dict):
        fault(place, "give a field path, or a mapping with field (or value), pattern, map")
        return None
    unknown = set(raw) - {"field", "value", "pattern", "map"}
    if unknown:
        fault(place, f"unknown keys {sorted(unknown)} (known: field, value, pattern, map)")
    if ("field" in raw) == ("value" in raw):
        fault(place, "give exactly one of field (a payload path) or value (a constant)")
        return None
    path = _path(raw["field"], f"{place}.field", fault) if "field" in raw else None
    mapping = raw.get("map")
    if mapping is not None and not isinstance(mapping, dict):
        fault(f"{place}.map", "a map is a mapping from payload value to result")
        mapping = None
    folded = {str(k).casefold(): v for k, v in mapping.items()} if mapping else None
    return Value(
        path=path,
        constant=raw.get("value"),
        pattern=_regex(raw.get("pattern"), f"{place}.pattern", fault),
        mapping=folded,
    )


def _condition(raw: Any, place: str, fault: Fault) -> Condition | None:
    if not isinstance(raw, dict) or "field" not in raw:
        fault(place, "a condition is a mapping with field and one of equals, one_of, matches")
        return None
    tests = [k for k in ("equals", "one_of", "matches", "present") if k in raw]
    if len(tests) != 1:
        fault(place, "give exactly one of equals, one_of, matches, present")
        return None
    unknown = set(raw) - {"field", "not", "equals", "one_of", "matches", "present"}
    if unknown:
        fault(place, f"unknown keys {sorted(unknown)}")
    path = _path(raw["field"], f"{place}.field", fault)
    if path is None:
        return None
    one_of = raw.get("one_of")
    if "one_of" in raw and not isinstance(one_of, list):
        fault(f"{place}.one_of", "must be a list")
        return None
    return Condition(
        path=path,
        equals=raw.get("equals"),
        one_of=tuple(one_of) if isinstance(one_of, list) else None,
        matches=_regex(raw.get("matches"), f"{place}.matches", fault),
        present=bool(raw["present"]) if "present" in raw else None,
        negate=bool(raw.get("not", False)),
    )


def _place(raw: Any, place: str, fault: Fault) -> Place | None:
    if not isinstance(raw, dict) or ("field" in raw) == ("shipped_in" in raw):
        fault(place, "a feature place is {field, pattern} or {shipped_in: field}")
        return None
    key = "field" if "field" in raw else "shipped_in"
    path = _path(raw[key], f"{place}.{key}", fault)
    pattern = _regex(raw.get("pattern"), f"{place}.pattern", fault)
    if pattern is not None and pattern.groups > 1:
        fault(f"{place}.pattern", "use at most one group: it is the feature id")
    return Place(path, pattern, shipped_in=key == "shipped_in") if path else None


def _rule(raw: Any, place: str, known_types: frozenset[str], fault: Fault) -> Rule | None:
    if not isinstance(raw, dict):
        fault(place, "a rule is a mapping with event, emit, feature, ...")
        return None
    known_keys = {
        "name", "event", "action", "when", "emit", "feature", "all_features", "time",
        "data", "remember",
    }  # fmt: skip
    unknown = set(raw) - known_keys
    if unknown:
        fault(place, f"unknown keys {sorted(unknown)} (known: {', '.join(sorted(known_keys))})")
    name = str(raw.get("name") or place)
    events = tuple(str(e) for e in _list(raw.get("event")))
    if not events:
        fault(f"{place}.event", "missing: name the delivery event(s) this rule matches")
    raw_emit = raw.get("emit")
    emit: Value | None = None
    if isinstance(raw_emit, str) and raw_emit:
        emit = Value(constant=raw_emit)  # a plain string is the event type itself
    elif isinstance(raw_emit, dict):
        emit = _value(raw_emit, f"{place}.emit", fault)
        if emit is not None and emit.path is not None and emit.mapping is None:
            fault(f"{place}.emit", "an event type read from the payload needs a map")
    else:
        fault(f"{place}.emit", "missing: the event type to emit, or {field, map}")
    for event_type in _emitted(emit):
        if event_type not in known_types:
            fault(f"{place}.emit", f"unknown event type {event_type!r}")
    # A list of places may hold lists (YAML aliases of shared places): flatten one level.
    raw_places = [q for p in _list(raw.get("feature")) for q in _list(p)]
    places = [_place(p, f"{place}.feature[{i}]", fault) for i, p in enumerate(raw_places)]
    if not places:
        fault(f"{place}.feature", "missing: list where the feature id is found")
    conditions = [
        _condition(c, f"{place}.when[{i}]", fault) for i, c in enumerate(_list(raw.get("when")))
    ]
    times = [_path(t, f"{place}.time", fault) for t in _list(raw.get("time"))]
    data_raw = raw.get("data") or {}
    if not isinstance(data_raw, dict):
        fault(f"{place}.data", "a mapping from data field to payload field")
        data_raw = {}
    data = {str(k): _value(v, f"{place}.data.{k}", fault) for k, v in data_raw.items()}
    remember = _value(raw["remember"], f"{place}.remember", fault) if raw.get("remember") else None
    return Rule(
        name=name,
        events=events,
        actions=tuple(str(a) for a in _list(raw.get("action"))),
        conditions=tuple(c for c in conditions if c is not None),
        emit=emit or Value(),
        places=tuple(p for p in places if p is not None),
        all_features=bool(raw.get("all_features", False)),
        times=tuple(t for t in times if t is not None),
        data={k: v for k, v in data.items() if v is not None},
        remember=remember,
    )


def _emitted(emit: Value | None) -> Iterable[str]:
    if emit is None:
        return []
    if emit.mapping is not None:
        return [str(v) for v in emit.mapping.values()]
    if emit.path is None and emit.constant is not None:
        return [str(emit.constant)]
    return []


def _auth(raw: Any, fault: Fault) -> Auth | None:
    if not isinstance(raw, dict):
        fault("auth", "a generic connector needs auth: {scheme, header, secret_env}")
        return None
    try:
        scheme = AuthScheme(str(raw.get("scheme")))
    except ValueError:
        fault("auth.scheme", f"one of {', '.join(s.value for s in AuthScheme)}")
        return None
    header = raw.get("header") or ("Authorization" if scheme is AuthScheme.BEARER else None)
    if not isinstance(header, str) or not header:
        fault("auth.header", "missing: the header that carries the signature or token")
        return None
    secret_env = raw.get("secret_env")
    if not isinstance(secret_env, str) or not SECRET_ENV.match(secret_env):
        fault("auth.secret_env", "the environment variable of the secret, LIFECYCLE_...")
        return None
    return Auth(scheme, header, secret_env, str(raw.get("prefix") or ""))


def compile_connector(doc: Any, where: str, known_types: Iterable[str]) -> Connector:
    """Check one parsed YAML document and compile it.

    Args:
        doc: the parsed file.
        where: the file, named in every fault.
        known_types: the event types of the loaded workflows; a rule may emit only these.

    Raises:
        ConnectorError: listing every fault as ``<where>: <place>: <fault>``.
    """
    faults: list[str] = []

    def fault(place: str, text: str) -> None:
        faults.append(f"{where}: {place}: {text}")

    if not isinstance(doc, dict):
        raise ConnectorError(f"{where}: the document must be a mapping with name, kind, rules")
    name = doc.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        fault("name", "missing or not 1-63 chars of a-z0-9_- (it is the URL /hooks/<name>)")
        name = "?"
    try:
        kind = Kind(str(doc.get("kind")))
    except ValueError:
        fault("kind", f"one of {', '.join(k.value for k in Kind)}, not {doc.get('kind')!r}")
        kind = Kind.GENERIC
    defaults = KIND_DEFAULTS.get(kind)
    if defaults is not None:
        if "auth" in doc:
            fault("auth", f"kind {kind.value} authenticates its own way; remove auth")
        auth: Auth | None = defaults.auth
        event_header, event_field = defaults.event_header, defaults.event_path
        delivery_header: Any = defaults.delivery_header
        action_field: Any = doc.get("action_field", defaults.action_path)
    else:
        auth = _auth(doc.get("auth"), fault)
        event = doc.get("event") or {}
        event_header = event.get("header") if isinstance(event, dict) else None
        event_field = event.get("field") if isinstance(event, dict) else None
        if not event_header and not event_field:
            fault("event", "a generic connector names where the event is: {header} or {field}")
        delivery_header = (doc.get("delivery") or {}).get("header")
        action_field = doc.get("action_field", "action")
    event_path = _path(event_field, "event.field", fault) if event_field else None
    action_path = _path(action_field, "action_field", fault)
    source = doc.get("source") or kind.value
    if not isinstance(source, str):
        fault("source", "text, with {field.path} placeholders")
        source = kind.value
    for i, m in enumerate(TEMPLATE.finditer(source)):
        _path(m.group(1), f"source{{{i}}}", fault)
    known = frozenset(known_types)
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        fault("rules", "missing or empty: list the rules")
        raw_rules = []
    rules = [_rule(r, f"rules[{i}]", known, fault) for i, r in enumerate(raw_rules)]
    if faults:
        raise ConnectorError("\n".join(faults))
    assert auth is not None and action_path is not None
    return Connector(
        name=name,
        kind=kind,
        auth=auth,
        event_header=event_header,
        event_path=event_path,
        delivery_header=str(delivery_header) if delivery_header else None,
        action_path=action_path,
        source=source,
        rules=tuple(r for r in rules if r is not None),
        file=where,
    )


def load_file(path: str | Path, known_types: Iterable[str]) -> Connector:
    """Load and check one connector file.

    Raises:
        ConnectorError: the file cannot be read, is not YAML, or has faults.
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConnectorError(f"{path}: cannot read: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConnectorError(f"{path}: not valid YAML: {err}") from err
    return compile_connector(doc, str(path), known_types)


def builtin_folder() -> Path:
    """The folder of the connectors shipped with the engine (github, gitlab, jira)."""
    return Path(str(resources.files("connectors") / "definitions"))


def load_folder(folder: str | Path | None, known_types: Iterable[str]) -> dict[str, Connector]:
    """Every connector of ``folder``, plus the shipped ones it does not override by name.

    Raises:
        ConnectorError: a file is bad, the folder is missing, or two files share a name.
    """
    known = frozenset(known_types)
    found: dict[str, Connector] = {}
    folders = [builtin_folder()]
    if folder is not None:
        if not Path(folder).is_dir():
            raise ConnectorError(f"{folder}: LIFECYCLE_CONNECTORS is not a folder")
        folders.append(Path(folder))
    for where in folders:
        own: dict[str, Connector] = {}
        for path in sorted([*where.glob("*.yaml"), *where.glob("*.yml")]):
            connector = load_file(path, known)
            if connector.name in own:
                raise ConnectorError(
                    f"{path}: name: connector {connector.name!r} is also in "
                    f"{own[connector.name].file}"
                )
            own[connector.name] = connector
        found.update(own)
    return found
