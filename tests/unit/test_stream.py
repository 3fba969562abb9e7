"""The ban event stream's contract: order, isolation of slow and failing subscribers, overflow."""

from __future__ import annotations

import asyncio

import pytest

from banish.daemon.stream import EventStream
from banish.events import Ban, BanEvent, EventKind


def event(kind: EventKind, *addresses: str, t: float = 0.0) -> BanEvent:
    return BanEvent(kind, t, tuple(Ban(a, "sshd", t, 60) for a in addresses))


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_each_subscriber_sees_every_event_in_publish_order() -> None:
    async def main() -> None:
        stream = EventStream()
        seen: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}

        def recorder(name: str):  # type: ignore[no-untyped-def]
            async def handle(e: BanEvent) -> None:
                await asyncio.sleep(0)  # let the other subscriber run in between
                seen[name] += [(e.kind.value, b.address) for b in e.bans]
            return handle

        stream.subscribe("a", recorder("a"))
        stream.subscribe("b", recorder("b"))
        for i in range(50):
            stream.publish(event(EventKind.BAN, f"192.0.2.{i}"))
            stream.publish(event(EventKind.UNBAN, f"192.0.2.{i}"))
        assert await stream.drain(5)
        expected = [(k, f"192.0.2.{i}") for i in range(50) for k in ("ban", "unban")]
        assert seen["a"] == seen["b"] == expected
        await stream.close()

    run(main())


def test_a_slow_subscriber_delays_neither_the_publisher_nor_the_others() -> None:
    async def main() -> None:
        stream = EventStream()
        gate = asyncio.Event()
        fast: list[BanEvent] = []

        async def slow(e: BanEvent) -> None:
            await gate.wait()

        async def quick(e: BanEvent) -> None:
            fast.append(e)

        stream.subscribe("slow", slow)
        stream.subscribe("fast", quick)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(100):
            stream.publish(event(EventKind.BAN, f"198.51.100.{i}"))
        assert loop.time() - started < 0.5  # publish never waits
        assert await stream.get("fast").drain(5)  # type: ignore[union-attr]
        assert len(fast) == 100
        status = {s["name"]: s for s in stream.status()}
        assert status["slow"]["queued"] >= 99 and status["fast"]["queued"] == 0
        assert not await stream.get("slow").drain(0.05)  # type: ignore[union-attr]
        gate.set()
        assert await stream.drain(5)
        await stream.close()

    run(main())


def test_a_failing_subscriber_is_counted_and_gets_the_next_events() -> None:
    async def main() -> None:
        stream = EventStream()
        got: list[str] = []

        async def flaky(e: BanEvent) -> None:
            if e.bans[0].address == "192.0.2.2":
                raise RuntimeError("receiver down")
            got.append(e.bans[0].address)

        stream.subscribe("flaky", flaky)
        for i in range(1, 4):
            stream.publish(event(EventKind.BAN, f"192.0.2.{i}"))
        assert await stream.drain(5)
        assert got == ["192.0.2.1", "192.0.2.3"]
        (status,) = stream.status()
        assert status["errors"] == 1 and "receiver down" in status["last_error"]
        assert status["delivered"] == 2
        await stream.close()

    run(main())


@pytest.mark.parametrize("with_resync", [True, False])
def test_overflow_resyncs_a_state_subscriber_and_counts_drops_of_others(
        with_resync: bool) -> None:
    async def main() -> None:
        stream = EventStream()
        gate = asyncio.Event()
        handled: list[str] = []
        resyncs: list[int] = []

        async def handle(e: BanEvent) -> None:
            await gate.wait()
            handled.append(e.bans[0].address)

        async def resync() -> None:
            resyncs.append(len(handled))

        stream.subscribe("sub", handle, resync=resync if with_resync else None, capacity=10)
        for i in range(25):
            stream.publish(event(EventKind.BAN, f"203.0.113.{i}"))
        gate.set()
        assert await stream.drain(5)
        (status,) = stream.status()
        if with_resync:
            # Nothing dropped: the queue was replaced by one catch-up from the truth.
            assert status["dropped"] == 0 and status["resyncs"] == 1 == len(resyncs)
            assert handled[-1] == "203.0.113.24"
        else:
            # Published in one go, before delivery began: ten queued, the rest lost.
            assert status["dropped"] == 15
            assert resyncs == [] and handled == [f"203.0.113.{i}" for i in range(10)]
        await stream.close()

    run(main())
