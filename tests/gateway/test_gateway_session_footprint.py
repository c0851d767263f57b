"""What a live session keeps, and that keeping less changed nothing it does.

A gateway holds every live session for hours; what each one keeps is multiplied by a
thousand (bench/live_sessions.py measures it). These tests pin the behaviour of the lighter
parts: the end signal, the pump that waits on it, and a connection that drops its login
machinery once authenticated. No sizes are asserted here: figures belong to the benchmark.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncssh
import pytest
from gateway_inprocess import InProcessGateway, gateway_with_console

from certgate.access import Grant
from certgate.consoles.escape import DEFAULT_ESCAPE, EscapeParser, EscapeSequence
from certgate.gateway.server import _Connection
from certgate.gateway.session import EndSignal, LiveSession, _pump

# -- the end signal ---------------------------------------------------------------------------


def test_an_end_signal_wakes_its_waiter_when_set() -> None:
    async def scenario() -> tuple[bool, bool]:
        signal = EndSignal()
        waiting = asyncio.ensure_future(signal.wait())
        await asyncio.sleep(0)
        before = waiting.done()
        signal.set()
        await asyncio.wait_for(waiting, 5)
        return before, signal.is_set()

    assert asyncio.run(scenario()) == (False, True)


def test_an_end_signal_set_before_anyone_waits_is_already_done() -> None:
    async def scenario() -> bool:
        signal = EndSignal()
        signal.set()
        await asyncio.wait_for(signal.wait(), 5)
        return signal.is_set()

    assert asyncio.run(scenario()) is True


def test_a_cancelled_wait_leaves_the_end_signal_usable() -> None:
    async def scenario() -> bool:
        signal = EndSignal()
        first = asyncio.ensure_future(signal.wait())
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        second = asyncio.ensure_future(signal.wait())
        await asyncio.sleep(0)
        signal.set()
        await asyncio.wait_for(second, 5)
        return first.cancelled()

    assert asyncio.run(scenario()) is True


# -- the pump: two copy loops, ended by the session's signal ----------------------------------


class _Stdin:
    def __init__(self, failure: BaseException | None) -> None:
        self.failure = failure
        self.never = asyncio.get_running_loop().create_future()

    async def read(self, _size: int) -> bytes:
        if self.failure is not None:
            raise self.failure
        await self.never  # a user who types nothing
        return b""


class _Stdout:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        return None


class _Process:
    def __init__(self, failure: BaseException | None = None) -> None:
        self.stdin = _Stdin(failure)
        self.stdout = _Stdout()


class _QuietConsole:
    """An attachment whose guest prints ``greeting`` and then nothing."""

    exit_status = None
    end_reason = None

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield self.greeting
        await asyncio.get_running_loop().create_future()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()


class _Recorder:
    def __init__(self) -> None:
        self.output_seen = b""

    def output(self, data: bytes) -> None:
        self.output_seen += data

    def input(self, data: bytes) -> None:
        pass

    def tick(self) -> None:
        pass


def _live() -> LiveSession:
    # The pump never reads the grant (the re-checks do): an empty one stands in for it.
    return LiveSession("s-1", Grant.__new__(Grant), "127.0.0.1", True)


async def _run_pump(process: _Process, live: LiveSession) -> tuple[int, _Recorder]:
    recorder = _Recorder()
    status = await asyncio.wait_for(_pump(
        process, _QuietConsole(b"login: "), live, recorder,  # type: ignore[arg-type]
        EscapeParser(EscapeSequence.parse(DEFAULT_ESCAPE))), 5)
    return status, recorder


def test_a_session_ended_from_outside_stops_its_pump_and_tells_the_user() -> None:
    async def scenario() -> tuple[int, str | None, bytes, bytes]:
        process, live = _Process(), _live()
        pump = asyncio.ensure_future(_run_pump(process, live))
        await asyncio.sleep(0.05)
        live.terminate("identity revoked")  # what a re-check does on revocation
        status, recorder = await pump
        return status, live.end_reason, process.stdout.written, recorder.output_seen

    status, reason, shown, recorded = asyncio.run(scenario())
    assert status == 1
    assert reason == "identity revoked"
    assert shown.startswith(b"login: ")  # the guest's bytes reached the user...
    assert recorded == b"login: "  # ...and the recording
    assert b"session ended: identity revoked" in shown


def test_a_lost_client_connection_ends_the_session_with_its_reason() -> None:
    async def scenario() -> tuple[int, str | None]:
        process, live = _Process(ConnectionResetError("peer reset")), _live()
        status, _ = await _run_pump(process, live)
        return status, live.end_reason

    status, reason = asyncio.run(scenario())
    assert status == 1
    assert reason == "connection lost: peer reset"


def test_a_bug_in_a_copy_loop_ends_the_session_as_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[int, str | None, bytes]:
        process, live = _Process(KeyError("surprise")), _live()
        status, _ = await _run_pump(process, live)
        return status, live.end_reason, process.stdout.written

    status, reason, shown = asyncio.run(scenario())
    assert status == 1
    assert reason == "internal error: KeyError"
    assert b"session ended: internal error" in shown
    assert "session pump failed" in caplog.text



def test_a_copy_loop_cancelled_from_outside_ends_the_session() -> None:
    # Fail closed: with one direction dead the pump must not wait for ever (a task whose
    # coroutine raises CancelledError counts as cancelled).
    async def scenario() -> tuple[int, bool]:
        process, live = _Process(asyncio.CancelledError()), _live()
        status, _ = await _run_pump(process, live)
        return status, live.ended.is_set()

    status, ended = asyncio.run(scenario())
    assert ended
    assert status == 1

# -- an authenticated connection drops its login machinery -------------------------------------


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    with gateway_with_console(tmp_path_factory.mktemp("footprint"), ("vm01",)) as gateway:
        yield gateway


def _server_connections(harness: InProcessGateway) -> list[_Connection]:
    async def find() -> list[_Connection]:
        return [o for o in gc.get_objects() if isinstance(o, _Connection)
                and o.gateway is harness.gateway and o.authenticated and o.conn is not None
                and not o.conn.is_closed()]

    return harness.run(find())


def test_a_live_session_keeps_no_login_machinery_and_still_works(
    harness: InProcessGateway,
) -> None:
    rhea = harness.add_person("rhea", "role=operator")
    session = harness.session(rhea, "vm01")
    harness.run(session.read_until(b"recording console ready"))
    owners = [c for c in _server_connections(harness)
              if c.state.identity is not None and c.state.identity.user == "rhea"]
    assert len(owners) == 1
    owner = owners[0]
    assert owner.conn is not None
    # The validator hook (and the closures it holds) is gone; asyncssh's own method is back.
    assert "validate_public_key" not in vars(owner.conn)
    assert owner.state.resolved == {}
    # The login is known durable by a flag, not by a finished task kept for the session.
    assert owner.state.recorded is True and owner.state.login_recorded is None
    # No per-login copy of the server's options (asyncssh's reload_config was skipped).
    acceptor: Any = harness.gateway._server
    assert owner.conn._options is acceptor._options  # type: ignore[attr-defined]

    # Typing still reaches the gateway, and what it answers still reaches the user (the
    # escape menu's help goes through the session's inbox like console output).
    session.process.stdin.write(b"\x05c?")  # Ctrl-E c ?
    harness.run(session.read_until(b"escape menu: ^Ec then"))
    live = [s for s in harness.gateway.live.values() if s.grant.identity.user == "rhea"]
    assert len(live) == 1 and not live[0].ended.is_set()
    session.conn.close()


def test_a_second_key_after_a_refused_one_still_logs_in(harness: InProcessGateway) -> None:
    # The hook still does its work before authentication: an unknown key is refused (and
    # audited), then the person's own key is accepted on the same connection.
    sol = harness.add_person("sol", "role=operator")
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    head = harness.audit_head()

    async def go() -> bytes:
        conn = await asyncssh.connect(
            "127.0.0.1", harness.port, username="vm01", client_keys=[stranger, sol.key],
            known_hosts=None, agent_path=None, config=None, preferred_auth="publickey")
        process = await conn.create_process(term_type="xterm", term_size=(80, 24),
                                            encoding=None)
        seen = b""
        async with asyncio.timeout(15):
            while b"recording console ready" not in seen:
                seen += await process.stdout.read(65536)
        conn.close()
        return seen

    assert b"recording console ready" in harness.run(go())
    logins = [e for e in harness.audit("auth.login", after=head)]
    assert [e.outcome for e in logins][-2:] == ["deny", "allow"]
    assert logins[-1].user == "sol"
