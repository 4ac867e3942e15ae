"""ASGI entrypoint: ``uvicorn services.actions.main:app``."""

from services.actions.app import create_app

app = create_app()
