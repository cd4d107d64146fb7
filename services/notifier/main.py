"""`expertmatch notifier`: the notifier under uvicorn, configured from the environment."""

from __future__ import annotations

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from shared.serve import serve


def main(argv: list[str] | None = None) -> None:
    serve(argv, service="notifier", env_prefix="NOTIFIER_", settings_class=NotifierSettings, create_app=create_app)


if __name__ == "__main__":
    main()
