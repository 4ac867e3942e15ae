"""``csat``: the production command line (serve, migrate, topics, import, replay, dlq, contracts)."""
