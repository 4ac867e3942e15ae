"""ASGI entrypoint: ``uvicorn services.actions.main:app``."""

from services.actions.bootstrap import create_app

app = create_app()
