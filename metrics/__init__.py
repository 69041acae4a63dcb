"""The Prometheus metrics bundle (DESIGN.md section 6), built on a registry it is given."""

from metrics.bundle import LifecycleMetrics

__all__ = ["LifecycleMetrics"]
