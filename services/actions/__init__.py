"""Actions: evaluates declarative rules on every rating and emits notification requests."""
