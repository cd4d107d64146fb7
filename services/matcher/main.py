"""`expertmatch matcher`: the matcher service under uvicorn, configured from the environment."""

from __future__ import annotations

import argparse

import uvicorn

from services.matcher.app import create_app
from services.matcher.settings import MatcherSettings
from shared.logs import configure_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="expertmatch matcher", description="Run the matcher service.")
    parser.add_argument("--host", help="overrides MATCHER_HOST")
    parser.add_argument("--port", type=int, help="overrides MATCHER_PORT")
    args = parser.parse_args(argv)
    settings = MatcherSettings()
    configure_logging("matcher", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,  # keep the format configure_logging set
    )


if __name__ == "__main__":
    main()
