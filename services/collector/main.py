"""ASGI entrypoint: ``uvicorn services.collector.main:app``."""

from services.collector.bootstrap import create_app

app = create_app()
