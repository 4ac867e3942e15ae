"""Collector: validates ratings and publishes them as CloudEvents; 202 means the broker has them."""
