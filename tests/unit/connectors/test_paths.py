"""Field paths: keys, every element, an index, and elements filtered by a field."""

from __future__ import annotations

import pytest

from connectors.paths import parse_path

DOC = {
    "a": {"b": 1},
    "labels": [{"name": "x"}, {"name": "feature:PAY-1"}],
    "items": [{"field": "status", "toString": "Done"}, {"field": "Link", "toString": "L"}],
}


def test_paths_resolve() -> None:
    assert parse_path("a.b").values(DOC) == [1]
    assert parse_path("labels.*.name").values(DOC) == ["x", "feature:PAY-1"]
    assert parse_path("labels.1.name").values(DOC) == ["feature:PAY-1"]
    assert parse_path("items[field=status].toString").values(DOC) == ["Done"]
    assert parse_path("a.missing.deeper").values(DOC) == []
    assert parse_path("labels.9.name").first(DOC) is None


@pytest.mark.parametrize("bad", ["", "a..b", "a[b].c", 3, "a[x=1"])
def test_bad_paths_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_path(bad)
