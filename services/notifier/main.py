"""`expertmatch notifier`: the notifier under uvicorn, configured from the environment."""

from __future__ import annotations

import uvicorn

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from shared.logs import configure_logging


def main(argv: list[str] | None = None) -> None:
    settings = NotifierSettings()
    configure_logging("notifier", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
