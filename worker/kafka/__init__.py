"""Kafka edges: client configuration, records, DLQ headers, topics."""
