"""ASGI entrypoint: ``uvicorn services.scorer.main:app``."""

from services.scorer.app import create_app

app = create_app()
