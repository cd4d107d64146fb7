"""`expertmatch matcher`: the matcher service under uvicorn, configured from the environment."""

from __future__ import annotations

from services.matcher.app import create_app
from services.matcher.settings import MatcherSettings
from shared.serve import serve


def main(argv: list[str] | None = None) -> None:
    serve(argv, service="matcher", env_prefix="MATCHER_", settings_class=MatcherSettings, create_app=create_app)


if __name__ == "__main__":
    main()
