"""Inbound webhook connectors: GitHub, GitLab, Jira and generic deliveries mapped, as data,
to catalogue events (DESIGN.md 6b). Pure: no HTTP server, no Kafka, no clock."""

from connectors.auth import refusal, signature
from connectors.ledger import Ledger
from connectors.loader import builtin_folder, compile_connector, load_file, load_folder
from connectors.mapping import Delivery, Mapped, map_delivery
from connectors.model import Connector, Kind

__all__ = [
    "Connector",
    "Delivery",
    "Kind",
    "Ledger",
    "Mapped",
    "builtin_folder",
    "compile_connector",
    "load_file",
    "load_folder",
    "map_delivery",
    "refusal",
    "signature",
]
