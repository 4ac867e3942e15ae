"""ASGI entrypoint: ``uvicorn services.console.main:app``."""

from services.console.bootstrap import create_app

app = create_app()
