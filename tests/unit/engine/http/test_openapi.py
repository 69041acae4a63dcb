"""The OpenAPI 3.1 document is valid and describes every route the application serves."""

from __future__ import annotations

from openapi_spec_validator import validate

from engine.http.openapi import openapi_document


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_is_described(workflows: object) -> None:
    from prometheus_client import CollectorRegistry

    from engine.http.api import build_app
    from engine.http.local import EngineIngest, StoreReader
    from engine.risk.monitor import RiskMonitor
    from engine.service import Engine
    from engine.stores.memory import MemoryStore
    from metrics.bundle import LifecycleMetrics

    store = MemoryStore()
    app = build_app(
        ingest=EngineIngest(Engine(workflows, store)),  # type: ignore[arg-type]
        reader=StoreReader(store),
        workflows=workflows,  # type: ignore[arg-type]
        metrics=LifecycleMetrics(CollectorRegistry()),
        assess=RiskMonitor(workflows).assessment,  # type: ignore[arg-type]
    )
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    described = {
        (method, path) for path, ops in openapi_document()["paths"].items() for method in ops
    }
    assert served - {("get", "/"), ("get", "/static/{name}")} == described
