"""`expertmatch matcher`: the matcher service under uvicorn, configured from the environment."""

from __future__ import annotations

import uvicorn

from services.matcher.app import create_app
from services.matcher.settings import MatcherSettings
from shared.logs import configure_logging
from shared.serve import parse_bind


def main(argv: list[str] | None = None) -> None:
    bind = parse_bind(argv, service="matcher", env_prefix="MATCHER_")
    settings = MatcherSettings()
    host, port = bind.address(settings)
    configure_logging("matcher", settings.log_level)
    # log_config=None keeps the format configure_logging set.
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None)


if __name__ == "__main__":
    main()
