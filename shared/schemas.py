"""The JSON Schemas of what expertmatch sends to others, published in docs/schemas.

`make schemas` (`python -m shared.schemas [FOLDER]`) writes them from the models; a unit test
fails while a committed file differs from its model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from shared.webhooks import INVITATION_CREATED, InvitationCreated

DEFAULT_FOLDER = Path("docs/schemas")
# File name -> the model whose serialized form the file describes.
PUBLISHED: dict[str, type[BaseModel]] = {f"{INVITATION_CREATED}.json": InvitationCreated}


def schema_text(model: type[BaseModel]) -> str:
    """The model's JSON Schema (draft 2020-12) as the file holds it: what is sent, not what is accepted."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(mode="serialization"),
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(folder: Path = DEFAULT_FOLDER) -> list[Path]:
    """Write every published schema into `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in PUBLISHED.items():
        path = folder / name
        path.write_text(schema_text(model), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for path in write_schemas(Path(args[0]) if args else DEFAULT_FOLDER):
        print(path)


if __name__ == "__main__":
    main()
