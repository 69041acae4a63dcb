"""The lifecycle engine: the pure processor, its stores, the HTTP API, both modes and the CLI."""
