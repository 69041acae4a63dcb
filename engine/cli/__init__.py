"""The ``lifecycle`` command line: one entry point, :func:`engine.cli.main.main`."""
