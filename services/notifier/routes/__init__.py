"""The notifier's HTTP routes, one module per audience; each ``router(deps)`` is included by ``bootstrap``."""
