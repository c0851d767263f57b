"""An attachment's inbox: what the console sends a session, in order, to its one reader."""

from __future__ import annotations

import asyncio

from certgate.consoles.hub import _Inbox


async def _next(inbox: _Inbox) -> tuple[bytes, bool] | None:
    while not inbox.ready():
        await inbox.arrival()
    return inbox.take()


def test_items_come_out_in_the_order_they_were_put_across_waits() -> None:
    async def scenario() -> list[tuple[bytes, bool] | None]:
        inbox = _Inbox()
        inbox.put((b"a", True))
        inbox.put((b"b", False))
        got = [await _next(inbox), await _next(inbox)]
        waiting = asyncio.ensure_future(_next(inbox))
        await asyncio.sleep(0)
        inbox.put((b"c", True))  # while the reader waits
        got.append(await asyncio.wait_for(waiting, 5))
        inbox.put((b"d", True))
        inbox.put(None)
        got += [await _next(inbox), await _next(inbox)]
        return got

    assert asyncio.run(scenario()) == [(b"a", True), (b"b", False), (b"c", True),
                                       (b"d", True), None]


def test_a_reader_gets_every_item_exactly_once() -> None:
    async def scenario() -> list[tuple[bytes, bool] | None]:
        inbox = _Inbox()
        got: list[tuple[bytes, bool] | None] = []

        async def reader() -> None:
            while (item := await _next(inbox)) is not None:
                got.append(item)

        task = asyncio.ensure_future(reader())
        for round_ in range(50):
            for index in range(round_ % 4):
                inbox.put((f"{round_}.{index}".encode(), True))
            await asyncio.sleep(0)
        inbox.put(None)
        await asyncio.wait_for(task, 5)
        return got

    expected = [(f"{r}.{i}".encode(), True) for r in range(50) for i in range(r % 4)]
    assert asyncio.run(scenario()) == expected


def test_a_cancelled_reader_leaves_the_inbox_usable() -> None:
    async def scenario() -> tuple[bytes, bool] | None:
        inbox = _Inbox()
        first = asyncio.ensure_future(_next(inbox))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        inbox.put((b"after", True))
        return await asyncio.wait_for(_next(inbox), 5)

    assert asyncio.run(scenario()) == (b"after", True)
