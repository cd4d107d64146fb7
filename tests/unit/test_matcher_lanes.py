"""Live posts before backfill: the matcher's two lanes share one turn, and backfill yields to live."""

from __future__ import annotations

import asyncio

from services.matcher.consumer import Lanes


class _Handler:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def __call__(self, deliveries, *, pause=None) -> None:
        self.calls.append(f"start {deliveries[0]}")
        await self.hold.wait()
        self.calls.append(f"end {deliveries[0]}")


class _EmbeddingInCalls:
    """Embeds each batch in two calls, awaiting `pause` between them, as the matcher's service does."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.first_call_done = asyncio.Event()
        self.hold = asyncio.Event()

    async def __call__(self, deliveries, *, pause=None) -> None:
        self.calls.append(f"embed {deliveries[0]} 1/2")
        if pause is not None:
            self.first_call_done.set()
            await self.hold.wait()
            await pause()
        self.calls.append(f"embed {deliveries[0]} 2/2")


async def test_a_live_batch_waits_only_for_the_backfill_batch_in_hand_and_backfill_then_waits_for_live():
    handler = _Handler()
    lanes = Lanes(handler, None)
    await lanes.live_caught_up()
    handler.hold.clear()
    backfill = asyncio.create_task(lanes.backfill(["import-1"]))
    await asyncio.sleep(0)
    live = asyncio.create_task(lanes.live(["question"]))
    await asyncio.sleep(0)
    gate = asyncio.create_task(lanes.backfill_gate())
    await asyncio.sleep(0)
    assert handler.calls == ["start import-1"], "the live batch waits for the backfill batch in hand"

    handler.hold.set()
    await asyncio.gather(backfill, live)
    assert handler.calls == ["start import-1", "end import-1", "start question", "end question"]
    assert not gate.done(), "the next backfill batch waits until the live lane is idle again"

    await lanes.live_caught_up()
    await asyncio.wait_for(gate, 5)


async def test_a_live_batch_goes_between_two_embedding_calls_of_a_backfill_batch():
    handler = _EmbeddingInCalls()
    lanes = Lanes(handler, None)
    backfill = asyncio.create_task(lanes.backfill(["import-1"]))
    await asyncio.wait_for(handler.first_call_done.wait(), 5)
    live = asyncio.create_task(lanes.live(["question"]))
    await asyncio.sleep(0)
    assert handler.calls == ["embed import-1 1/2"], "the live batch waits for the call in hand"

    handler.hold.set()
    await asyncio.wait_for(asyncio.gather(backfill, live), 5)
    assert handler.calls == ["embed import-1 1/2", "embed question 1/2", "embed question 2/2", "embed import-1 2/2"]


async def test_a_backfill_batch_keeps_the_turn_when_no_live_batch_waits():
    handler = _EmbeddingInCalls()
    handler.hold.set()
    lanes = Lanes(handler, None)
    await asyncio.wait_for(lanes.backfill(["import-1"]), 5)
    await asyncio.wait_for(lanes.live(["question"]), 5)
    assert handler.calls == ["embed import-1 1/2", "embed import-1 2/2", "embed question 1/2", "embed question 2/2"]


async def test_backfill_is_slowed_by_a_steady_live_stream_not_stopped():
    lanes = Lanes(_Handler(), None, max_wait=0.01)
    await lanes.live(["question"])  # the live lane is busy and never reports idle
    await asyncio.wait_for(lanes.backfill_gate(), 5)


async def test_caught_up_only_once_both_lanes_are():
    caught: list[bool] = []

    async def on_caught_up() -> None:
        caught.append(True)

    lanes = Lanes(_Handler(), on_caught_up)
    await lanes.live_caught_up()
    assert caught == [], "an import may still be arriving"
    await lanes.backfill_caught_up()
    assert caught == [True]
    await lanes.backfill(["import-1"])
    await lanes.live_caught_up()
    assert caught == [True], "the backfill lane has work again"
