"""The serving half of `make bench-scale`: one matcher process over a built index, timed, and its RSS.

`python -m tests.bench.scale_serve FOLDER QUESTIONS`: the matcher's app over FOLDER/index (its
lifespan, the model loaded as it loads it, an embedded broker for its producer), then the rank
step of each question, the search route, and recall of the dense search against exact search.
Prints progress on stderr and one JSON line of figures on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
from asgi_lifespan import LifespanManager
from qdrant_edge import Query, QueryRequest, SearchParams

from services.matcher.app import create_app
from services.matcher.index.edge import edge_filter
from services.matcher.index.payload import DENSE
from services.matcher.index.where import matching
from services.matcher.settings import MatcherSettings
from shared.embedded_broker import EmbeddedBroker
from tests.bench.scale import NOW

DEPTH = 300


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {f"p{p}": float(np.percentile(ms, p)) for p in (50, 95, 99)}


def _memory() -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    keys = (("rss", "VmRSS"), ("hwm", "VmHWM"), ("anon", "RssAnon"), ("file", "RssFile"))
    return {name: int(fields[key].split()[0]) * 1024 for name, key in keys}


def _mapped_by_part(folder: Path) -> dict[str, int]:
    """Resident bytes of the shard's mapped files, by the segment part they belong to (payload_storage,
    vector_storage-dense, ...); RssAnon is what the process allocated itself."""
    parts: dict[str, int] = {}
    current = None
    root = str(folder.resolve())
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and "-" in fields[0] and not fields[0].endswith(":"):
            path = fields[5]
            current = None
            if path.startswith(root):
                relative = Path(path).relative_to(root).parts
                # index/segments/<segment>/<part>/...: the part; else the file's folder under index/.
                current = relative[3] if len(relative) > 3 and relative[1] == "segments" else "/".join(relative[1:2])
        elif current is not None and fields and fields[0] == "Rss:":
            parts[current] = parts.get(current, 0) + int(fields[1]) * 1024
    return dict(sorted(parts.items(), key=lambda item: -item[1]))


async def rank_times(service, asked: list[dict]) -> tuple[float, list[float]]:
    """The rank step of each question as the matcher runs it for a new post: (first, the others)."""
    seconds = []
    for q in asked:
        started = time.perf_counter()
        await service.rank_question(
            tenant=q["tenant"], vector=q["vector"], asker=q["asker"], thread_id=q["thread_id"],
            audience=("public",), now=NOW + timedelta(minutes=1), limit=10, text=q["text"], tags=q["tags"],
        )
        seconds.append(time.perf_counter() - started)
    return seconds[0], seconds[1:]


async def api_times(client: httpx.AsyncClient, asked: list[dict]) -> list[float]:
    """POST /v1/experts/search with each question's text (the route embeds it), after one untimed call."""
    headers = {"Authorization": f"Bearer key-{asked[0]['tenant']}"}
    seconds = []
    for q in [asked[0], *asked]:
        started = time.perf_counter()
        answer = await client.post(
            "/v1/experts/search", json={"text": q["text"], "limit": 10, "exclude": [q["asker"]]}, headers=headers
        )
        answer.raise_for_status()
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


async def embed_times(embedder, asked: list[dict]) -> list[float]:
    """The model alone on each question's text, one at a time: the part of the search route the index cannot change."""
    seconds = []
    for q in asked:
        started = time.perf_counter()
        await embedder.embed([q["text"]])
        seconds.append(time.perf_counter() - started)
    return seconds


async def recall(index, asked: list[dict]) -> float:
    """Share of the exact top DEPTH (tenant filter) that the index's own dense search returns."""
    found = []
    for q in asked:
        request = QueryRequest(
            query=Query.Nearest(q["vector"], using=DENSE), filter=edge_filter(matching(q["tenant"])), limit=DEPTH,
            with_payload=["post_id"], params=SearchParams(exact=True),
        )
        exact = {p.payload["post_id"] for p in await index.engine.run(lambda shard, r=request: shard.query(r))}
        served = {hit.post_id for hit in await index.search(q["tenant"], q["vector"], limit=DEPTH)}
        found.append(len(exact & served) / max(1, len(exact)))
    return float(np.mean(found))


async def serve(folder: Path, asked: list[dict]) -> dict:
    tenants = list(dict.fromkeys(q["tenant"] for q in asked))
    with EmbeddedBroker() as broker:
        settings = MatcherSettings(
            data_dir=folder, kafka_bootstrap_servers=broker.bootstrap_servers, consume=False,
            api_keys=",".join(f"key-{t}:{t}" for t in tenants),
            # No refit in the background while the rank step is timed (the scorer is linear either way).
            learn_min_examples=10**9,
        )
        app = create_app(settings)
        async with LifespanManager(app, startup_timeout=300, shutdown_timeout=120):
            matcher = app.state.matcher
            await matcher.embedder.wait_loaded()
            figures: dict = {"tenants": {}}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://matcher", timeout=60) as client:
                for tenant in tenants:
                    mine = [q for q in asked if q["tenant"] == tenant]
                    first, rank = await rank_times(matcher.service, mine)
                    _say(f"  {tenant}: rank step first {first * 1000:.0f} ms, p50 {_percentiles(rank)['p50']:.0f} ms")
                    api = await api_times(client, mine)
                    embed = await embed_times(matcher.embedder, mine)
                    _say(f"  {tenant}: search API p50 {_percentiles(api)['p50']:.0f} ms, "
                         f"of which the model alone p50 {_percentiles(embed)['p50']:.0f} ms")
                    figures["tenants"][tenant] = {
                        "points": await matcher.index.count(tenant),
                        "rank_first": first * 1000, "rank": _percentiles(rank), "api": _percentiles(api),
                        "embed": _percentiles(embed),
                        "recall": await recall(matcher.index, mine),
                    }
            figures.update(_memory(), load=os.getloadavg()[0], mapped_by_part=_mapped_by_part(folder))
            _say("  mapped shard files resident, by part: " + ", ".join(
                f"{part} {size / 2**20:.0f} MiB" for part, size in figures["mapped_by_part"].items() if size >= 2**20
            ))
    return figures


def main() -> int:
    folder, asked = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    print(json.dumps(asyncio.run(serve(folder, asked))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
