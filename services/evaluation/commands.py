"""The `eval` and `import` subcommands of `expertmatch`; `register(subparsers)` adds them."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from services.matcher.embedder import BACKENDS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `eval` and `import` to the CLI; each sets `handler`, which returns an exit code."""
    evaluation = subparsers.add_parser(
        "eval", help="replay a Stack Exchange dump through expertmatch and the baselines, and score them"
    )
    evaluation.add_argument("dump", type=Path, help="a Stack Exchange Posts.xml or Posts.xml.gz")
    evaluation.add_argument("--test-fraction", type=_fraction, default=0.2,
                            help="the last share of questions ranked as test questions (default 0.2)")
    evaluation.add_argument("--json", type=Path, help="write the scores to this JSON file")
    evaluation.add_argument("--plot", type=Path, help="draw Hit@k for k = 1..20 to this PNG")
    evaluation.add_argument("--cache", type=Path, help="embedding cache file "
                            "(default: $EXPERTMATCH_DATA_DIR/cache, else ~/.cache/expertmatch)")
    evaluation.add_argument("--embedder", choices=BACKENDS,
                            help="the model's runtime (default: $MATCHER_EMBEDDER, else onnx-int8); "
                            "each keeps its own vectors in the cache")
    evaluation.add_argument("--feedback", action="store_true",
                            help="also score expertmatch+feedback: its top --invited of each test question "
                            "respond (answered, if they answered the thread) and the matcher hears it")
    evaluation.add_argument(
        "--invited", type=int, default=3, help="invitations per test question with --feedback (default 3)"
    )
    evaluation.add_argument("--silence", choices=("declined", "not_my_area"), default="declined",
                            help="what an invitee who never answered says, with --feedback (default declined)")
    evaluation.add_argument("--ceiling", action="store_true",
                            help="also refit expertmatch's weights on the test questions themselves and score "
                            "that: how far better weights alone could go with these features")
    evaluation.set_defaults(handler=run_eval)

    backfill = subparsers.add_parser("import", help="send a Stack Exchange dump to the ingest API as backfill")
    backfill.add_argument("dump", type=Path, help="a Stack Exchange Posts.xml or Posts.xml.gz")
    backfill.add_argument("--api", required=True, help="the ingest service's base URL, e.g. http://127.0.0.1:8001")
    backfill.add_argument("--key", required=True, help="an API key of the tenant to import into")
    backfill.add_argument("--batch", type=int, default=500, help="posts per request (default 500)")
    backfill.add_argument("--wait", action="store_true",
                          help="then show the matcher's indexing progress until it holds every post sent")
    backfill.add_argument("--matcher", default="http://127.0.0.1:8002",
                          help="the matcher's base URL, for --wait (default http://127.0.0.1:8002)")
    backfill.add_argument("--stall", type=float, default=300.0,
                          help="with --wait, give up after this many seconds with no post more indexed (default 300)")
    backfill.set_defaults(handler=run_import)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"--test-fraction must be between 0 and 1, got {text}")
    return value


def run_eval(args: argparse.Namespace) -> int:
    """`expertmatch eval`: the table on stdout, and the JSON and plot when asked."""
    # Imported here: the model, Qdrant Edge and bm25s load only when an evaluation runs.
    from services.evaluation.cache import EmbeddingCache, default_cache_path
    from services.evaluation.evaluate import evaluate
    from services.evaluation.replay import SimulatedInvitations
    from services.evaluation.report import plot, table, write_json
    from services.matcher.bootstrap import _policy
    from services.matcher.embedder import build_embedder
    from services.matcher.settings import MatcherSettings
    from shared.env import from_environment
    from shared.events import ResponseKind

    if not args.dump.exists():
        print(f"expertmatch eval: no dump at {args.dump}", file=sys.stderr)
        return 2
    if args.invited < 1:
        print("expertmatch eval: --invited must be at least 1", file=sys.stderr)
        return 2
    feedback = SimulatedInvitations(invited=args.invited, silence=ResponseKind(args.silence)) if args.feedback else None
    settings = from_environment(MatcherSettings)
    cache_path = args.cache or default_cache_path(_data_dir_from_env())
    cache = EmbeddingCache(cache_path)
    backend = args.embedder or settings.embedder
    model = build_embedder(
        backend, batch_size=settings.embed_batch_size, max_seq_length=settings.embed_max_seq_length,
        # Exported ONNX files beside the vectors, unless MATCHER_MODEL_DIR says where.
        model_dir=settings.model_dir or cache_path.parent / "models",
    )
    try:
        # The matcher's own ranking policy, from the same MATCHER_* settings it runs with.
        evaluation = asyncio.run(
            evaluate(
                args.dump,
                embedder=model,
                cache=cache,
                policy=_policy(settings),
                test_fraction=args.test_fraction,
                feedback=feedback,
                ceiling=args.ceiling,
            )
        )
    finally:
        model.close()
        cache.close()
    print(table(evaluation))
    print(f"embedded {evaluation.notes['embedded']} new texts with {model.name} (cache: {cache_path}); "
          f"bm25 indexed and scored in {evaluation.notes['bm25_s']:.1f} s")
    if args.json:
        write_json(evaluation, args.json)
    if args.plot:
        plot(evaluation, args.plot)
    return 0


def _data_dir_from_env() -> Path | None:
    value = os.environ.get("EXPERTMATCH_DATA_DIR")
    return Path(value) if value else None


def run_import(args: argparse.Namespace) -> int:
    """`expertmatch import`: post the dump in batches; a count of what was sent and skipped."""
    from services.evaluation.importer import ImportFailed, import_dump

    if args.batch < 1:
        print("expertmatch import: --batch must be at least 1", file=sys.stderr)
        return 2
    if args.stall <= 0:
        print("expertmatch import: --stall must be more than 0 seconds", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(import_dump(args.dump, api=args.api, key=args.key, batch=args.batch))
    except (ImportFailed, FileNotFoundError) as exc:
        print(f"expertmatch import: {exc}", file=sys.stderr)
        return 1
    print(summary.describe())
    if not args.wait:
        return 0
    try:
        indexed = asyncio.run(_wait(args, summary.post_ids))
    except ImportFailed as exc:
        print(f"expertmatch import: {exc}", file=sys.stderr)
        return 1
    print(f"the matcher holds all {indexed} posts")
    return 0


async def _wait(args: argparse.Namespace, post_ids: list[str]) -> int:
    import httpx

    from services.evaluation.importer import wait_indexed

    headers = {"Authorization": f"Bearer {args.key}"}
    async with httpx.AsyncClient(base_url=args.matcher, headers=headers, timeout=30.0) as matcher:
        return await wait_indexed(matcher, post_ids, stall=args.stall)
