"""`expertmatch import --wait` as an operator runs it, against the ingest and matcher as processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests.support.services import ServiceProcesses
from tests.unit.test_eval_import import DUMP

pytestmark = pytest.mark.e2e


@pytest.fixture
def system(broker, topic_prefix, tmp_path):
    services = ServiceProcesses.of_test(
        broker, topic_prefix, tmp_path,
        services=("ingest", "matcher"),
    )
    with services:
        yield services


async def _import(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "services.cli", "import", *args]
    return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=300)


async def test_import_wait_returns_once_the_matcher_holds_every_post_sent(system, tmp_path):
    dump = tmp_path / "Posts.xml"
    dump.write_text(DUMP)

    done = await _import(
        str(dump), "--api", system.url("ingest"), "--key", "acme-key", "--wait", "--matcher", system.url("matcher"),
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "the matcher holds all 3 posts"
    assert "indexed" in done.stderr  # the progress bar, beside the import's own


async def test_import_wait_with_a_matcher_that_never_answers_gives_up_and_says_so(system, tmp_path):
    dump = tmp_path / "Posts.xml"
    dump.write_text(DUMP)
    nowhere = "http://127.0.0.1:9"  # nothing listens: the import is sent, its indexing never seen

    done = await _import(
        str(dump), "--api", system.url("ingest"), "--key", "acme-key", "--wait", "--matcher", nowhere, "--stall", "3",
    )

    assert done.returncode == 1
    assert "sent 3 posts as backfill" in done.stdout
    assert "indexed 0 of the 3 posts sent, and no more for 3 s" in done.stderr
