"""`expertmatch ingest`: the ingest service under uvicorn, configured from the environment."""

from __future__ import annotations

import argparse

import uvicorn

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.logs import configure_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="expertmatch ingest", description="Run the ingest service.")
    parser.add_argument("--host", help="overrides INGEST_HOST")
    parser.add_argument("--port", type=int, help="overrides INGEST_PORT")
    args = parser.parse_args(argv)
    settings = IngestSettings()
    host = args.host or settings.host
    port = args.port or settings.port
    configure_logging("ingest", settings.log_level)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, timeout_graceful_shutdown=10)
