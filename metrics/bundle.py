"""Every Prometheus metric of the engine, declared once against a registry it is given.

The composition roots build one :class:`LifecycleMetrics` per process with their own
``CollectorRegistry`` (no global registry in library code) and hand it to the recorder that
turns outcomes into metric updates. Names and labels are the contract of DESIGN.md section 6;
no label ever holds a feature id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from metrics.families import Counter, Gauge, Histogram, OldestTimestamp

DAY = 86400.0
STAGE_BUCKETS = (
    60.0,
    600.0,
    3600.0,
    6 * 3600.0,
    DAY,
    2 * DAY,
    4 * DAY,
    7 * DAY,
    14 * DAY,
    21 * DAY,
    30 * DAY,
    45 * DAY,
    60 * DAY,
    90 * DAY,
    float("inf"),
)
LEAD_BUCKETS = (
    3600.0,
    DAY,
    7 * DAY,
    14 * DAY,
    30 * DAY,
    45 * DAY,
    60 * DAY,
    90 * DAY,
    120 * DAY,
    180 * DAY,
    270 * DAY,
    365 * DAY,
    float("inf"),
)
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    float("inf"),
)


class LifecycleMetrics:
    """The metric families; children are cached by the recorder on hot paths.

    Families come from :mod:`metrics.families` (lock-free, single-writer): update them from
    the thread that processes events, which is also the one serving ``/metrics``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.features = Gauge(
            "lifecycle_features",
            "Features now in a stage.",
            ["workflow", "stage", "product"],
            registry=registry,
        )
        self.transitions = Counter(
            "lifecycle_transitions_total",
            "Stage changes applied, by the stage left and the stage entered.",
            ["workflow", "from_stage", "to_stage"],
            registry=registry,
        )
        self.stage_duration = Histogram(
            "lifecycle_stage_duration_seconds",
            "Time features spent in a stage, observed when they leave it (event time).",
            ["workflow", "stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.lead_time = Histogram(
            "lifecycle_lead_time_seconds",
            "Time from a feature's creation to its first launch (event time).",
            ["workflow"],
            buckets=LEAD_BUCKETS,
            registry=registry,
        )
        self.events = Counter(
            "lifecycle_events_total",
            "Events processed, by type (unknown outside the catalogue) and outcome.",
            ["type", "outcome"],
            registry=registry,
        )
        self.rework = Counter(
            "lifecycle_rework_total",
            "Re-entries of a stage a feature had been in before.",
            ["workflow", "stage"],
            registry=registry,
        )
        self.features_at_risk = Gauge(
            "lifecycle_features_at_risk",
            "Features at risk now, by stage and reason (a feature counts once per reason).",
            ["workflow", "stage", "reason"],
            registry=registry,
        )
        self.stage_oldest_entry = OldestTimestamp(
            "lifecycle_stage_oldest_entry_timestamp_seconds",
            "Unix time at which the longest-waiting feature of a stage entered it.",
            ["workflow", "stage"],
            registry=registry,
        )
        # Process metrics of the engine itself.
        self.processing = Histogram(
            "lifecycle_event_processing_seconds",
            "Wall time to parse, apply and store one event.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.dead_letters = Counter(
            "lifecycle_dead_letters_total",
            "Malformed records sent to the dead-letter topic (or refused over HTTP), by reason.",
            ["reason"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "lifecycle_consumer_lag_messages",
            "Records of the input topic not yet processed, per owned partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.last_processed = Gauge(
            "lifecycle_last_event_processed_timestamp_seconds",
            "Unix time at which this process last finished an event.",
            registry=registry,
        )
        self.products_folded = Counter(
            "lifecycle_products_folded_total",
            'Distinct products counted as product="other" in lifecycle_features, because '
            "LIFECYCLE_MAX_PRODUCTS products already had a label of their own.",
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "lifecycle_webhook_deliveries_total",
            "Webhook deliveries received by a connector (POST /hooks/{connector}), by what "
            "became of them: mapped, ignored, unauthorized, malformed, unavailable.",
            ["connector", "outcome"],
            registry=registry,
        )
        self.risk_signals = Counter(
            "lifecycle_risk_signals_total",
            "Risk changes published (feature.at_risk / feature.risk_cleared), by reason.",
            ["workflow", "reason", "change"],
            registry=registry,
        )
