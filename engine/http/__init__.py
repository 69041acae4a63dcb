"""The HTTP API of both modes (DESIGN.md section 5), built from an ingest and a reader port."""
