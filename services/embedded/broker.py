"""The embedded broker kept alive: started again on its port when it dies, its topics re-created, a new epoch written.

The broker keeps nothing, so every start is a new, empty broker. Services learn of it from the
epoch file (shared/epoch.py), which is written only once the topics of deploy/topics.json exist:
a service that sees the new epoch finds its topics there. Used by `expertmatch run` and by tests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.embedded.backoff import Backoff
from shared.embedded_broker import EmbeddedBroker
from shared.epoch import next_epoch, write_epoch
from shared.kafka import ensure_topics
from shared.settings import CommonSettings
from shared.topics import TopicSpec

log = logging.getLogger(__name__)
T = TypeVar("T")


class TopicsNotCreated(Exception):
    """The broker answers but its topics could not be made to match deploy/topics.json in time."""


class BrokerSupervisor:
    """Starts the embedded broker, creates its topics, writes the epoch; does all three again whenever it dies.

    Blocking methods; from a coroutine, call `start`, `stop` and `wait_restarted` in a thread
    (or use `restarted`). `announce` receives one line for each death and each return.
    """

    def __init__(
        self,
        *,
        epoch_file: Path,
        topics: Sequence[TopicSpec] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        backoff: Backoff | None = None,
        announce: Callable[[str], None] = log.info,
        start_timeout: float = 30.0,
    ) -> None:
        self.epoch_file = epoch_file
        self._topics = list(topics)
        self._broker = EmbeddedBroker(host=host, port=port, log_path=log_path)
        # A broker that dies at once is started again ever more slowly; the first restart is quick.
        self._backoff = backoff or Backoff(first=0.5, cap=30.0, stable_after=60.0)
        self._announce = announce
        self._start_timeout = start_timeout
        self._lock = threading.RLock()  # one start, kill or topic change at a time
        self._stopping = threading.Event()
        self._epoch_changed = threading.Condition()
        self._epoch: int | None = None
        self._watcher: threading.Thread | None = None

    @property
    def bootstrap_servers(self) -> str:
        return self._broker.bootstrap_servers

    @property
    def pid(self) -> int | None:
        return self._broker.pid

    @property
    def epoch(self) -> int | None:
        """The epoch of the broker running now (None before the first start)."""
        return self._epoch

    def start(self) -> BrokerSupervisor:
        """Start the broker, create the topics, write the first epoch, then watch it."""
        with self._lock:
            self._stopping.clear()
            try:
                self._bring_up()
            except BaseException:  # Ctrl-C included: no broker is left behind
                self._broker.stop()
                raise
        self._watcher = threading.Thread(target=self._watch, name="broker-supervisor", daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> None:
        """Stop the broker for good: the watcher lets it go."""
        self._stopping.set()
        with self._lock:
            self._broker.stop()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join()
        self._watcher = None

    def kill(self) -> int | None:
        """kill -9 the broker, as a crash would; returns the epoch it had, for `wait_restarted`."""
        with self._lock:
            epoch = self._epoch
            self._broker.kill()
        return epoch

    def wait_restarted(self, after: int | None, timeout: float) -> int:
        """Block until a broker with an epoch above `after` runs with its topics; returns that epoch."""
        deadline = time.monotonic() + timeout
        with self._epoch_changed:
            while self._epoch is None or (after is not None and self._epoch <= after):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the broker was not back with an epoch above {after} after {timeout:.0f}s")
                self._epoch_changed.wait(remaining)
            return self._epoch

    async def restarted(self, after: int | None, timeout: float) -> int:
        """`wait_restarted` for a coroutine."""
        return await asyncio.to_thread(self.wait_restarted, after, timeout)

    def add_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create these topics now if the broker runs, and again after every restart."""
        with self._lock:
            new = [spec for spec in specs if spec not in self._topics]
            self._topics.extend(new)
            if new and self._epoch is not None and not self._stopping.is_set():
                _run_blocking(ensure_topics(_admin_settings(self.bootstrap_servers), new))

    def forget_topics(self, specs: Sequence[TopicSpec]) -> None:
        """No longer re-create these topics after a restart."""
        with self._lock:
            self._topics = [spec for spec in self._topics if spec not in specs]

    def __enter__(self) -> BrokerSupervisor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _bring_up(self) -> int:
        """Start the broker, make its topics, then (only then) the next epoch."""
        self._broker.start(self._start_timeout)
        self._backoff.started()
        replaced = _run_blocking(apply_topics(self.bootstrap_servers, self._topics, timeout=self._start_timeout))
        if replaced:
            self._announce(f"{', '.join(replaced)}: created by a client before the supervisor could, "
                           "with the broker's default partitions; replaced as deploy/topics.json says")
        epoch = next_epoch(self.epoch_file)
        write_epoch(self.epoch_file, epoch)
        with self._epoch_changed:
            self._epoch = epoch
            self._epoch_changed.notify_all()
        return epoch

    def _watch(self) -> None:
        while not self._stopping.is_set():
            code = self._broker.wait()
            if self._stopping.is_set():
                return
            died_at = time.monotonic()
            epoch = self._restart(f"the broker died ({_how(code)}); it kept nothing: "
                                  f"restarting it on {self.bootstrap_servers}")
            if epoch is None:
                return
            self._announce(f"the broker is back on {self.bootstrap_servers} (pid {self.pid}): topics re-created, "
                           f"epoch {epoch} ({time.monotonic() - died_at:.1f}s after it died)")

    def _restart(self, news: str) -> int | None:
        """Bring it up again after the backoff's delay, as often as it takes; None once stopping."""
        while True:
            delay = self._backoff.delay()
            self._announce(news if delay < 1 else f"{news} in {delay:g}s")
            if self._stopping.wait(delay):
                return None
            with self._lock:
                if self._stopping.is_set():
                    return None
                try:
                    return self._bring_up()
                except (OSError, KafkaError, TopicsNotCreated) as exc:
                    self._broker.stop()
                    news = f"the broker did not come back ({exc}); trying again"


async def apply_topics(bootstrap: str, specs: Sequence[TopicSpec], *, timeout: float) -> list[str]:
    """Create the topics on a broker just started; returns those it had to replace.

    Until they exist, any client's metadata request makes the broker create a topic it names with
    its own default partitions. Such a topic holds at most what was sent in that moment, which its
    senders send again once they see the new epoch; it is deleted and created as the file says.
    """
    if not specs:
        return []
    deadline = time.monotonic() + timeout
    replaced: list[str] = []
    while True:
        pause = 0.1
        try:
            await ensure_topics(_admin_settings(bootstrap), specs)
            partitions = await topic_partitions(bootstrap)
            missing = [spec.name for spec in specs if spec.name not in partitions]
            wrong = [spec for spec in specs if partitions.get(spec.name, spec.partitions) != spec.partitions]
            if not missing and not wrong:
                return replaced
            problem = f"{', '.join(missing)} not created yet"
            if wrong:
                # Created again at once: a client has little time to make its own in between.
                await _delete(bootstrap, [spec.name for spec in wrong])
                await ensure_topics(_admin_settings(bootstrap), wrong)
                replaced.extend(spec.name for spec in wrong if spec.name not in replaced)
                problem, pause = f"{', '.join(spec.name for spec in wrong)} made by clients again and again", 0
        except (KafkaError, OSError) as exc:
            problem = repr(exc)  # the port is open a moment before the broker serves requests
        if time.monotonic() > deadline:
            raise TopicsNotCreated(f"topics not created on {bootstrap} in {timeout:.0f}s: {problem}")
        await asyncio.sleep(pause)


async def topic_partitions(bootstrap: str) -> dict[str, int]:
    """Every topic on the broker with its partition count (asks for all, so it creates none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {topic["topic"]: len(topic["partitions"]) for topic in await admin.describe_topics()}
    finally:
        await admin.close()


async def _delete(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


def _admin_settings(bootstrap: str) -> CommonSettings:
    # Only the address matters to ensure_topics when it is given the specs; nothing else is read
    # from the environment, whose other settings are the services' business.
    return CommonSettings.model_construct(kafka_bootstrap_servers=bootstrap)


def _how(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _run_blocking(coroutine: Coroutine[object, object, T]) -> T:
    """Run a coroutine to the end from blocking code, also from a thread whose event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
