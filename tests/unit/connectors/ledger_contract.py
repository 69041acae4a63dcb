"""What every release ledger must do (:class:`connectors.ledger.ReleaseLedger`), for each
implementation's tests to run on its own ledger: in memory and SQLite in the unit tests, the
Kafka topic on the real broker."""

from __future__ import annotations

from connectors.ledger import ReleaseLedger
from connectors.mapping import ledger_key

SOURCE = "github/acme/checkout"


async def check_ledger(ledger: ReleaseLedger) -> None:
    """Record, union, order and isolation of releases; ``ledger`` starts empty."""
    v1, v2 = ledger_key(SOURCE, "v1.0.0"), ledger_key(SOURCE, "v2.0.0")
    other = ledger_key("github/acme/other", "v1.0.0")
    await ledger.refresh()
    assert ledger(v1) == ()
    await ledger.record([(v1, ("PAY-1", "PAY-2"))])
    await ledger.refresh()
    assert ledger(v1) == ("PAY-1", "PAY-2")
    await ledger.record([(v1, ("PAY-2", "PAY-3")), (v2, ("PAY-9",))])
    await ledger.refresh()
    assert ledger(v1) == ("PAY-1", "PAY-2", "PAY-3")  # a union, in the order first recorded
    assert ledger(v2) == ("PAY-9",)
    assert ledger(other) == ()  # the same tag in another repository is another release
    await ledger.record([(v1, ("PAY-1",))])  # a redelivered release changes nothing
    await ledger.refresh()
    assert ledger(v1) == ("PAY-1", "PAY-2", "PAY-3")
