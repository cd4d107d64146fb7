"""`expertmatch run` as `make run` starts it: the demo's invitations are printed, what dies comes back,
and it stops cleanly."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from services.demo.corpus import load_corpus
from services.embedded.broker import topic_partitions
from shared.embedded_broker import free_port
from tests.support.topics import expected_partitions

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
        # Until each question's expert is invited and as many invitations are verified: a
        # verification is printed after its invitation, so the last one may still be coming.
        while (answered != set(wanted) or verified < len(wanted)) and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            assert line is not None, "expertmatch run exited early:\n" + "\n".join(seen[-40:])
            seen.append(line)
            if (found := INVITATION.search(line)) and found["person"] in wanted.get(found["title"], ()):
                answered.add(found["title"])
            verified += line.endswith("signature verified")
        assert answered == set(wanted), "missing invitations:\n" + "\n".join(seen[-60:])
        assert verified >= len(wanted), "unverified invitations:\n" + "\n".join(seen[-60:])
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


class Console:
    """The lines `expertmatch run` prints, awaited one pattern at a time with a deadline."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines = _lines(process)
        self.seen: list[str] = []

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            assert line is not None, f"expertmatch run exited waiting for {pattern!r}:\n" + self.tail()
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matching {pattern!r} after {timeout:.0f}s:\n" + self.tail())

    def rest(self) -> list[str]:
        while (line := self.lines.get(timeout=30)) is not None:
            self.seen.append(line)
        return self.seen

    def tail(self) -> str:
        return "\n".join(self.seen[-60:])


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_run_brings_back_a_killed_service_and_a_killed_broker(tmp_path):
    data = tmp_path / "data"
    ports = [free_port() for _ in range(3)]
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", "--no-demo", "--data-dir", str(data),
         "--ports", ",".join(map(str, ports))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_clean_env(), cwd=tmp_path,
    )
    console = Console(process)
    try:
        broker = console.wait_for(r"embedded Kafka-protocol broker on (?P<address>\S+) \(pid (?P<pid>\d+);"
                                  r".*topics created, epoch (?P<epoch>\d+)", 120)
        matcher = console.wait_for(r"matcher started \(pid (?P<pid>\d+)\)", 60)
        console.wait_for("ingest, matcher and notifier are ready", 600)
        epoch = int(broker["epoch"])
        assert _epoch(data) == epoch

        killed = time.monotonic()
        os.kill(int(matcher["pid"]), signal.SIGKILL)
        console.wait_for(r"matcher exited \(code -9\); restarting in 1s", 60)
        console.wait_for(rf"matcher is ready again on http://127.0.0.1:{ports[1]} ", 600)
        matcher_back = time.monotonic() - killed
        assert httpx.get(f"http://127.0.0.1:{ports[1]}/readyz", timeout=30).status_code == 200

        killed = time.monotonic()
        os.kill(int(broker["pid"]), signal.SIGKILL)
        console.wait_for(rf"the broker died \(killed by signal 9\); it kept nothing: "
                         rf"restarting it on {re.escape(broker['address'])}$", 60)
        back = console.wait_for(r"the broker is back on (?P<address>\S+) \(pid (?P<pid>\d+)\): "
                                r"topics re-created, epoch (?P<epoch>\d+)", 120)
        broker_back = time.monotonic() - killed
        assert back["address"] == broker["address"]
        assert int(back["epoch"]) == epoch + 1 == _epoch(data)
        assert asyncio.run(topic_partitions(back["address"])) == expected_partitions()
        print(f"kill -9 to ready again: matcher {matcher_back:.1f}s, broker {broker_back:.1f}s")
    finally:
        process.send_signal(signal.SIGTERM)  # as a service manager stops it; Ctrl-C is the test above
        try:
            code = process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0
    lines = console.rest()
    assert any("broker stopped" in line for line in lines)
    assert not any("Traceback" in line for line in lines), console.tail()
    # Nothing of the run is left behind, the restarted processes included.
    restarted = re.search(r"matcher restarted \(pid (\d+)\)", "\n".join(lines))
    assert _gone(int(back["pid"]), 30) and _gone(int(restarted[1]), 30)


def _epoch(data: Path) -> int:
    return int((data / "broker-epoch").read_text())
