"""`expertmatch run` as `make run` starts it: the demo's invitations are printed, then it stops cleanly."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from services.demo.corpus import load_corpus
from shared.embedded_broker import free_port

pytestmark = pytest.mark.e2e

INVITATION = re.compile(r'INVITATION -> (?P<person>.+?) to "(?P<title>.+)" \(score')


def _lines(process: subprocess.Popen) -> queue.Queue:
    """Every output line, read on a thread so the test can wait with a deadline."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _clean_env() -> dict[str, str]:
    # As on a fresh machine: no servers configured, so the runner starts and owns everything.
    env = {k: v for k, v in os.environ.items()
           if k not in {"KAFKA_BOOTSTRAP_SERVERS", "QDRANT_URL", "DATABASE_URL", "EXPERTMATCH_API_KEYS"}
           and not k.startswith(("INGEST_", "MATCHER_", "NOTIFIER_", "KAFKA_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_make_run_prints_signed_invitations_for_the_right_people(tmp_path):
    corpus = load_corpus()
    names = {person.id: person.name for person in corpus.people}
    # Per demo question: who the corpus says should be asked.
    wanted = {q.title: {names[p] for p in q.expected_experts} for q in corpus.demo_questions}
    ports = ",".join(str(free_port()) for _ in range(3))
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", "--data-dir", str(tmp_path / "data"), "--ports", ports],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_clean_env(), cwd=tmp_path,
    )
    lines = _lines(process)
    seen: list[str] = []
    answered: set[str] = set()
    verified = 0
    try:
        deadline = time.monotonic() + 300
        while answered != set(wanted) and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            assert line is not None, "expertmatch run exited early:\n" + "\n".join(seen[-40:])
            seen.append(line)
            if found := INVITATION.search(line):
                if found["person"] in wanted.get(found["title"], ()):
                    answered.add(found["title"])
            verified += line.endswith("signature verified")
        assert answered == set(wanted), "missing invitations:\n" + "\n".join(seen[-60:])
        assert verified >= len(wanted)
        assert (tmp_path / "data" / "api-key").exists()
        assert any("API key for tenant 'demo'" in line for line in seen)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0
    tail = []
    while (line := lines.get(timeout=5)) is not None:
        tail.append(line)
    assert any("broker stopped" in line for line in tail)
    assert not any("Traceback" in line for line in tail), "\n".join(tail)
