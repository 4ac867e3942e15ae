"""Code shared by every service: event schemas, topic names, settings base, Kafka and DB helpers."""
