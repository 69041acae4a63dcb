"""The engine's clock on the wire: every HTTP answer says what time the engine thinks it is.

Views that show a time span (the board's card ages, ``lifecycle status`` and ``list``)
measure it against :data:`NOW_HEADER`, never against their own clock: the engine judges
SLAs, risks and forecasts on its clock, and during ``lifecycle demo`` that clock runs a
simulated day per second, far behind the wall clock. No imports: the CLI reads it too.
"""

NOW_HEADER = "Lifecycle-Now"
"""Response header on every answer of the API: the engine's clock when it answered, RFC 3339
UTC with a ``Z`` (e.g. ``2026-11-26T10:00:00.123456Z``)."""
