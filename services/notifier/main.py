"""`expertmatch notifier`: the notifier under uvicorn, configured from the environment."""

from __future__ import annotations

import uvicorn

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from shared.logs import configure_logging
from shared.serve import parse_bind


def main(argv: list[str] | None = None) -> None:
    bind = parse_bind(argv, service="notifier", env_prefix="NOTIFIER_")
    settings = NotifierSettings()
    host, port = bind.address(settings)
    configure_logging("notifier", settings.log_level)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None)


if __name__ == "__main__":
    main()
