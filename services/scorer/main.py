"""ASGI entrypoint: ``uvicorn services.scorer.main:app``."""

import gc

from services.scorer.bootstrap import create_app

app = create_app()

# Start-up objects live for ever: keep them out of every collection. A micro-batch holds thousands of
# decoded (acyclic) events, so the default of a collection every 700 allocations cost the consumer
# about a third of its CPU; cycles are rare here and still get collected, just less often.
gc.freeze()
gc.set_threshold(100_000, 100, 100)
