"""`make fuzz`: schemathesis against each service's own OpenAPI document, the services as real processes.

The services run as `expertmatch <service>` on the embedded broker and SQLite (or PostgreSQL with
`--database-url`). Every operation gets a fixed number of examples from a fixed seed, and each
service's run has a time limit, so a run is bounded and repeatable. It fails on any server error,
and on any answer the document does not describe (status, content type or body).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from shared.embedded_broker import EmbeddedBroker
from tests.support.services import SERVICES, ServiceProcesses

REPO = Path(__file__).resolve().parents[2]
KEY, TENANT = "fuzz-key", "fuzz"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance")


@dataclass
class FuzzReport:
    """What schemathesis sent one service and what it found."""

    service: str
    operations: int = 0
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # "<check> <METHOD> <path>: <status>", once per check, operation and status.
    failures: list[str] = field(default_factory=list)
    # Set when schemathesis did not finish (time limit, crash): what it printed last.
    error: str | None = None

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failures and self.server_errors == 0

    def line(self) -> str:
        by_class = Counter(f"{status // 100}xx" for status in self.statuses.elements())
        answers = ", ".join(f"{name} {by_class[name]}" for name in sorted(by_class))
        found = f"{len(self.failures)} failed checks" if self.failures else "no failed check"
        return (
            f"{self.service:9} {self.operations:3} operations {self.cases:6} cases  answers: {answers or 'none'}"
            f"  server errors: {self.server_errors}  {found}"
        )


def fuzz_service(
    name: str, url: str, *, examples: int, seed: int, timeout: float, work_dir: Path, key: str = KEY
) -> FuzzReport:
    """Run schemathesis over one service's /openapi.json and read its event log into a report."""
    reports = work_dir / f"schemathesis-{name}"
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/openapi.json",
        "--header", f"Authorization: Bearer {key}",
        "--checks", ",".join(CHECKS),
        "--max-examples", str(examples),
        "--seed", str(seed),
        "--continue-on-failure",
        "--generation-database", "none",
        "--report", "ndjson", "--report-dir", str(reports),
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": str(REPO)}
    log = work_dir / f"schemathesis-{name}.txt"
    with open(log, "wb") as out:
        try:
            subprocess.run(command, cwd=work_dir, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            report = FuzzReport(name, error=f"not done after {timeout:.0f}s")
            return _read_events(reports, report)
    report = _read_events(reports, FuzzReport(name))
    if not report.operations:
        report.error = log.read_text(errors="replace")[-2000:]
    return report


def _read_events(reports: Path, report: FuzzReport) -> FuzzReport:
    for path in sorted(reports.glob("*.ndjson")):
        with open(path) as events:
            for line in events:
                _count(json.loads(line), report)
    return report


def _count(event: dict, report: FuzzReport) -> None:
    if loaded := event.get("LoadingFinished"):
        report.operations = loaded["statistic"]["operations"]["selected"]
    elif finished := event.get("ScenarioFinished"):
        recorder = finished["recorder"]
        report.cases += len(recorder.get("cases", {}))
        interactions = recorder.get("interactions", {})
        for interaction in interactions.values():
            if interaction.get("response"):
                report.statuses[interaction["response"]["status_code"]] += 1
        for case_id, checks in recorder.get("checks", {}).items():
            response = (interactions.get(case_id) or {}).get("response") or {}
            for check in checks:
                if check["status"] == "failure":
                    failure = f"{check['name']} {recorder['label']}: {response.get('status_code')}"
                    if failure not in report.failures:
                        report.failures.append(failure)


@contextmanager
def running_services(
    data_dir: Path,
    *,
    bootstrap_servers: str | None = None,
    topic_prefix: str = "fuzz-",
    database_url: str | None = None,
) -> Iterator[ServiceProcesses]:
    """The three services, on a broker of their own unless given one, with one tenant's key."""
    with ExitStack() as stack:
        if bootstrap_servers is None:
            bootstrap_servers = stack.enter_context(EmbeddedBroker(log_path=data_dir / "broker.log")).bootstrap_servers
        yield stack.enter_context(
            ServiceProcesses(
                bootstrap_servers=bootstrap_servers,
                data_dir=data_dir / "services",
                api_keys=f"{KEY}:{TENANT}",
                topic_prefix=topic_prefix,
                extra_env={"DATABASE_URL": database_url} if database_url else {},
            )
        )


def log_errors(services: ServiceProcesses) -> dict[str, list[str]]:
    """Each service's logged errors (a crashed consumer, a dead letter), which no HTTP answer shows."""
    return {name: [line for line in services.log(name).splitlines() if _is_error(line)] for name in SERVICES}


def _is_error(line: str) -> bool:
    """A JSON line at ERROR or above or with a traceback, or a traceback the interpreter printed itself."""
    try:
        entry = json.loads(line)
    except ValueError:
        return "Traceback" in line
    return isinstance(entry, dict) and (entry.get("level") in ("ERROR", "CRITICAL") or "exception" in entry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="examples per operation and phase (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="the seed, for a run that can be repeated")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one service's run may take")
    parser.add_argument("--database-url", help="the notifier's database (default: SQLite)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="expertmatch-fuzz-") as tmp:
        work_dir = Path(tmp)
        with running_services(work_dir, database_url=args.database_url) as services:
            reports = [
                fuzz_service(name, services.url(name), examples=args.examples, seed=args.seed,
                             timeout=args.timeout, work_dir=work_dir)
                for name in SERVICES
            ]
            errors = log_errors(services)
    for report in reports:
        print(report.line())
        for failure in report.failures:
            print(f"    {failure}")
        if report.error:
            print(f"    did not finish: {report.error}")
    for name, lines in errors.items():
        if lines:
            print(f"{name} logged {len(lines)} errors, the first: {lines[0]}")
    total = sum(r.cases for r in reports)
    print(f"{total} cases, {sum(r.server_errors for r in reports)} server errors, "
          f"{sum(len(r.failures) for r in reports)} failed checks (seed {args.seed}, {args.examples} examples)")
    return 0 if all(r.ok for r in reports) and not any(errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
