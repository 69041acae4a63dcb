"""The one exception tree of the project.

Every error the engine raises on purpose derives from :class:`LifecycleError`, so a caller
(the HTTP API, the CLI, a Kafka agent) can catch one type and show its message to a user.
"""

from __future__ import annotations

from dataclasses import dataclass


class LifecycleError(Exception):
    """Base of every deliberate error in the lifecycle engine."""


@dataclass(frozen=True)
class Problem:
    """One reason an input was refused: where (``field``) and why (``reason``)."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class MalformedEvent(LifecycleError):
    """An input that is not a valid CloudEvent of the contract.

    Carries every problem found, not just the first, so a sender can fix them all at once.
    """

    def __init__(self, problems: list[Problem], *, index: int | None = None) -> None:
        self.problems = problems
        self.index = index
        where = f"event {index}: " if index is not None else ""
        super().__init__(where + "; ".join(str(p) for p in problems))


class Unavailable(LifecycleError):
    """A read that cannot be answered truthfully now, e.g. the feature's partition is being
    recovered or moved between workers. Answered 503 with ``Retry-After``; try again."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreError(LifecycleError):
    """A database the engine cannot use, or a write it could not make.

    Raised at start-up for a file that is not a lifecycle database, has a schema newer than
    this engine, cannot be opened or written, or is in use by another engine; and for a
    commit the database refused (disk full, I/O error). The message names the file and the
    database's own reason.
    """


class EmitFailed(LifecycleError):
    """An event the emitter could not hand to Kafka, or Kafka did not acknowledge in time.

    Raised at the sender's own call (``emit``, ``flush``, waiting on a sent event): the broker
    was unreachable, refused the record, or did not answer within the emitter's timeout. The
    event may or may not have been written; sending it again with the same ``id`` is safe,
    because the engine treats a repeated (``source``, ``id``) as a duplicate.
    """


class ConnectorError(LifecycleError):
    """A connector file that cannot be loaded; the message names file, place and fault."""


class KafkaUnreachable(LifecycleError):
    """A Kafka client cannot start: no bootstrap broker connected, authenticated (SASL) and
    answered in time, or its TLS certificate is not trusted.

    Raised at start-up (a worker, ``lifecycle emit --kafka``) by the connection check, so a
    wrong password or certificate is one line within seconds, never a retry loop. The message
    names the brokers, the security settings (never the password) and the reason.
    """
