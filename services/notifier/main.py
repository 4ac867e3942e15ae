"""ASGI entrypoint: ``uvicorn services.notifier.main:app``."""

from services.notifier.app import create_app

app = create_app()
