"""Configuration read at the edge: settings, process tuning, Kafka client security."""
