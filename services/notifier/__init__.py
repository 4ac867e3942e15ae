"""Notifier: renders and sends messages through provider adapters, once per notification id."""
