"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.fuzz.hooks): bodies that also carry what no encoder takes.

Schemathesis draws strings it can encode as UTF-8, so it never sends a lone surrogate; JSON can
(`"\\ud800"`), and such a string once made ingest answer 500. A quarter of the JSON bodies get one,
or a NUL, in one of their strings.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st

UNENCODABLE = st.sampled_from(["\ud800", "\udfff", "\udc00\ud800", "\x00"])
Path = tuple[str | int, ...]


def _string_paths(value: Any, path: Path = ()) -> list[Path]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _string_paths(item, (*path, key))]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _string_paths(item, (*path, index))]
    return []


def _with(value: Any, path: Path, bad: str, at: int) -> Any:
    if not path:
        cut = at % (len(value) + 1)
        return value[:cut] + bad + value[cut:]
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: _with(value[head], tuple(rest), bad, at)}
    return [_with(item, tuple(rest), bad, at) if index == head else item for index, item in enumerate(value)]


@schemathesis.hook
def flatmap_body(context, body: Any):
    paths = _string_paths(body)
    if not paths:
        return st.just(body)
    spoiled = st.builds(_with, st.just(body), st.sampled_from(paths), UNENCODABLE, st.integers(0, 10_000))
    return st.integers(0, 3).flatmap(lambda n: spoiled if n == 0 else st.just(body))
