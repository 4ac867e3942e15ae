"""ASGI entrypoint: ``uvicorn services.notifier.main:app``."""

from services.notifier.bootstrap import create_app

app = create_app()
