"""Console connects and disconnects, observed from outside the console hub.

The hub opens backends through an injectable ``opener``; wrapping it reports each backend
connection when it opens and when it closes (once, however often ``close`` is called),
without the hub knowing about logs or metrics.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from certgate.consoles.backends import ConsoleConnection, open_console
from certgate.consoles.errors import ConsoleError
from certgate.observability.observer import GatewayObserver

Opener = Callable[..., Awaitable[ConsoleConnection]]


class _ObservedConnection:
    def __init__(self, inner: ConsoleConnection, on_close: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_close: Callable[[str], None] | None = on_close

    async def read(self) -> bytes:
        return await self._inner.read()

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def resize(self, cols: int, rows: int) -> None:
        await self._inner.resize(cols, rows)

    async def send_break(self) -> bool:
        return await self._inner.send_break()

    async def close(self) -> None:
        await self._inner.close()
        report, self._on_close = self._on_close, None
        if report is not None:
            report(self._inner.end_reason)

    @property
    def exit_status(self) -> int | None:
        return self._inner.exit_status

    @property
    def end_reason(self) -> str:
        return self._inner.end_reason


def observed_opener(observer: GatewayObserver, vm: str,
                    opener: Opener = open_console) -> Opener:
    async def open_observed(target: Any, **options: Any) -> ConsoleConnection:
        try:
            connection = await opener(target, **options)
        except ConsoleError as exc:
            observer.console("unavailable", vm=vm, target=str(target), detail=str(exc))
            raise
        observer.console("connect", vm=vm, target=str(target))
        return _ObservedConnection(
            connection, lambda reason: observer.console("disconnect", vm=vm,
                                                        target=str(target), detail=reason))
    return open_observed
