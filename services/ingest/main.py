"""`expertmatch ingest`: the ingest service under uvicorn, configured from the environment."""

from __future__ import annotations

import uvicorn

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.logs import configure_logging
from shared.serve import parse_bind


def main(argv: list[str] | None = None) -> None:
    bind = parse_bind(argv, service="ingest", env_prefix="INGEST_")
    settings = IngestSettings()
    host, port = bind.address(settings)
    configure_logging("ingest", settings.log_level)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, timeout_graceful_shutdown=10)
