"""`expertmatch ingest`: the ingest service under uvicorn, configured from the environment."""

from __future__ import annotations

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.serve import serve


def main(argv: list[str] | None = None) -> None:
    serve(
        argv,
        service="ingest",
        env_prefix="INGEST_",
        settings_class=IngestSettings,
        create_app=create_app,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
