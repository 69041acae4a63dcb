"""The pure core: the processor, feature state, effects and outcomes, saturating time math.

No I/O here: import-linter (``make lint``) forbids aiohttp, Faust, Kafka, SQLite and
prometheus_client in this package.
"""
