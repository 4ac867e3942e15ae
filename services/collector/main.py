"""ASGI entrypoint: ``uvicorn services.collector.main:app``."""

from services.collector.app import create_app

app = create_app()
