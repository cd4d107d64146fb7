"""The supervisor behind `make run`: broker and topics, services, demo receiver and demo corpus.

Whatever dies is started again (the broker with its topics and a new epoch, a service after a
backoff); Ctrl-C or SIGTERM stops everything in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka.errors import KafkaError

from services.demo.corpus import DemoQuestion, load_corpus
from services.embedded import demo
from services.embedded.broker import BrokerSupervisor, TopicsNotCreated
from services.embedded.children import Child, ChildFailed, child_env, current_env
from services.embedded.console import say
from services.embedded.receiver import DemoReceiver
from shared.env import from_environment
from shared.kafka import ensure_topics
from shared.settings import CommonSettings, parse_api_keys
from shared.topics import load_topic_specs

SERVICES = ("ingest", "matcher", "notifier")
DEFAULT_PORTS = (8001, 8002, 8003)
DEMO_TENANT = "demo"


@dataclass(frozen=True)
class RunOptions:
    data_dir: Path
    ports: tuple[int, int, int] = DEFAULT_PORTS
    demo: bool = True
    ready_timeout: float = 300.0
    index_timeout: float = 300.0
    learn_timeout: float = 120.0


def default_data_dir() -> Path:
    return Path(os.environ.get("EXPERTMATCH_DATA_DIR") or ".expertmatch")


def api_keys(data_dir: Path) -> str:
    """EXPERTMATCH_API_KEYS if set; else a key for tenant `demo`, kept in the data folder across runs."""
    if configured := os.environ.get("EXPERTMATCH_API_KEYS"):
        return configured
    path = data_dir / "api-key"
    if path.exists():
        key = path.read_text().strip()
    else:
        key = "em_" + secrets.token_urlsafe(24)
        path.write_text(key + "\n")
        path.chmod(0o600)
    return f"{key}:{DEMO_TENANT}"


def taken_ports(ports: tuple[int, ...]) -> list[int]:
    """The ports something already listens on (binding is the only honest test)."""
    taken = []
    for port in ports:
        with socket.socket() as sock:
            # As uvicorn binds: connections of an earlier run lingering in TIME_WAIT do not count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                taken.append(port)
    return taken


def run(options: RunOptions) -> int:
    """Run until Ctrl-C or SIGTERM; the exit code says whether everything went as planned."""
    data_dir = options.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    taken = taken_ports(options.ports)
    if taken:
        names = {port: name for name, port in zip(SERVICES, options.ports, strict=True)}
        for port in taken:
            say(f"port {port} ({names[port]}) is already in use: stop what listens there "
                f"(an earlier `expertmatch run`?) or pick others with --ports")
        return 2
    keys = api_keys(data_dir)
    broker = None
    settings = from_environment(CommonSettings)
    kafka_env = {}
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        try:
            broker = _start_embedded_broker(settings, data_dir)
        except (OSError, TopicsNotCreated) as exc:
            say(f"the embedded broker did not start: {exc}")
            return 1
        kafka_env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "KAFKA_EPOCH_FILE": str(broker.epoch_file)}
    elif not create_topics(settings):
        return 1
    try:
        return asyncio.run(_supervise(options, data_dir=data_dir, keys=keys, kafka_env=kafka_env))
    finally:
        if broker is not None:
            broker.stop()
            say("broker stopped")


def _start_embedded_broker(settings: CommonSettings, data_dir: Path) -> BrokerSupervisor:
    """The broker with the topics of deploy/topics.json, then its epoch; watched from now on."""
    log_path = data_dir / "broker.log"
    broker = BrokerSupervisor(
        epoch_file=data_dir / "broker-epoch",
        topics=load_topic_specs(settings.kafka_topics_file, prefix=settings.kafka_topic_prefix),
        log_path=log_path,
        announce=say,
    ).start()
    say(f"embedded Kafka-protocol broker on {broker.bootstrap_servers} (pid {broker.pid}; in memory; "
        f"log: {log_path}); topics created, epoch {broker.epoch}")
    return broker


def create_topics(settings: CommonSettings) -> bool:
    """On the broker KAFKA_BOOTSTRAP_SERVERS names: the topics, once, before any service starts.

    Its log is durable, so it keeps them; False (after saying why) if it cannot be reached.
    """
    bootstrap = settings.kafka_bootstrap_servers
    try:
        created = asyncio.run(ensure_topics(settings))
    except (KafkaError, OSError) as exc:
        say(f"could not create the topics on the Kafka broker at {bootstrap}: {exc!r}")
        return False
    say(f"using the Kafka broker at {bootstrap}; topics: "
        f"{'created ' + ', '.join(created) if created else 'all exist'}")
    return True


async def _supervise(options: RunOptions, *, data_dir: Path, keys: str, kafka_env: dict[str, str]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    env = child_env(
        current_env(),
        **kafka_env,
        EXPERTMATCH_API_KEYS=keys,
        EXPERTMATCH_DATA_DIR=str(data_dir),
        **{f"{name.upper()}_PORT": str(port) for name, port in zip(SERVICES, options.ports, strict=True)},
    )
    if options.demo:
        env.update(_demo_notifier_env(env))
    children = {name: Child(name, port, env) for name, port in zip(SERVICES, options.ports, strict=True)}
    key, tenant = next(iter(parse_api_keys(keys).items()))
    receiver = None
    keepers: list[asyncio.Task] = []
    question = load_corpus().try_question
    try:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            for child in children.values():
                await child.start()
            keepers = [asyncio.create_task(child.keep_running(http), name=f"{child.name}-keeper")
                       for child in children.values()]
            for child in children.values():
                await child.wait_ready(http, options.ready_timeout)
            say("ingest, matcher and notifier are ready")
            receiver = await _demo(options, http, children) if options.demo else None
            _print_usage(key, tenant, children, question, demo=receiver is not None)
            return await _until_stopped(stop, keepers)
    except ChildFailed as exc:
        say(str(exc))
        return 1
    except (httpx.HTTPError, OSError) as exc:
        say(f"the demo could not be set up: {exc!r}")
        return 1
    finally:
        say("stopping (services finish their batch and commit first)")
        if receiver is not None:
            await receiver.stop()
        await asyncio.gather(*(child.stop() for child in children.values()))
        await asyncio.gather(*keepers, return_exceptions=True)


def _demo_notifier_env(env: dict[str, str]) -> dict[str, str]:
    """What the notifier needs to invite the demo's people through the demo receiver."""
    # The receiver listens on loopback, which the notifier refuses unless allowed.
    allowed = ",".join(filter(None, [env.get("NOTIFIER_ALLOWED_HOSTS", ""), "127.0.0.1"]))
    extra = {"NOTIFIER_ALLOWED_HOSTS": allowed}
    # Every run asks the same people again; the daily and weekly caps would silence reruns.
    for name, value in (("NOTIFIER_MAX_INVITES_PER_DAY", "1000"), ("NOTIFIER_MAX_INVITES_PER_WEEK", "5000")):
        if name not in env:
            extra[name] = value
    return extra


async def _demo(options: RunOptions, http: httpx.AsyncClient, children: dict[str, Child]) -> DemoReceiver:
    corpus = load_corpus()
    receiver = DemoReceiver(names={person.id: person.name for person in corpus.people})
    await receiver.start()
    receiver.trust(await demo.subscribe(http, children["notifier"].url, receiver.url))
    say(f"demo webhook receiver on {receiver.url}, subscribed to the notifier")
    sent = await demo.load_backfill(http, children["ingest"].url, corpus)
    say(f"sent the demo corpus of {corpus.company.name}: {len(corpus.people)} people, {sent} posts (backfill)")
    indexed = await demo.wait_indexed(http, children["matcher"].url, sent, options.index_timeout)
    if indexed < sent:
        say(f"only {indexed} of {sent} posts indexed after {options.index_timeout:.0f}s; asking anyway")
    else:
        say(f"the matcher has indexed {indexed} contributions")
    # The demo's questions are ranked as the tenant's own model would rank them, not by the fusion
    # it starts with: the matcher fits it in the background once it has caught up with the corpus.
    learned = await demo.wait_learned(http, children["matcher"].url, options.learn_timeout)
    say(f"the matcher learned from {learned} past questions with an accepted answer" if learned
        else f"no learned model after {options.learn_timeout:.0f}s; the hand-set fusion ranks")
    await demo.ask_demo_questions(http, children["ingest"].url, corpus)
    return receiver


async def _until_stopped(stop: asyncio.Event, keepers: list[asyncio.Task]) -> int:
    """Wait for Ctrl-C/SIGTERM (exit 0); a service that dies meanwhile is restarted by its keeper.

    A keeper ends on its own only if it could not start its service again at all (exit 1).
    """
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopping, *keepers], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if stopping in done:
        return 0
    broken = next(task for task in keepers if task in done)
    problem = broken.exception() if not broken.cancelled() else None
    say(f"{broken.get_name().removesuffix('-keeper')} could not be restarted ({problem!r}); stopping the rest")
    return 1


def _print_usage(key: str, tenant: str, children: dict[str, Child], question: DemoQuestion, *, demo: bool) -> None:
    ingest_url = children["ingest"].url
    where = (
        "invitations appear above as the notifier delivers them"
        if demo
        else f"subscribe a webhook with POST {children['notifier'].url}/v1/subscriptions to receive invitations"
    )
    post = {"id": question.id, "thread_id": f"{question.id}-thread", "author_id": question.author_id,
            "kind": "question", "title": question.title, "body": question.body}
    say(
        f"API key for tenant '{tenant}': {key}\n"
        f"post a question of your own:\n"
        f"  curl -s -X POST {ingest_url}/v1/posts -H 'Authorization: Bearer {key}' \\\n"
        f"    -H 'Content-Type: application/json' \\\n"
        f"    -d '{json.dumps(post)}'\n"
        f"{where}; Ctrl-C stops everything"
    )
