"""The multiplexer's rules, driven with plain calls (no sockets, no event loop)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certgate.consoles import (
    ConsoleClosed,
    ConsoleMux,
    EndReason,
    Privileges,
    SessionUnknown,
)

VIEW = Privileges()
INTERACT = Privileges(interact=True)
BREAK = Privileges(interact=True, send_break=True)


def test_guest_output_fans_out_to_every_attached_session():
    mux = ConsoleMux()
    mux.attach("alice", INTERACT)
    mux.attach("bob", VIEW)
    fanout = mux.backend_output(b"login: ")
    assert fanout.data == b"login: "
    assert set(fanout.session_ids) == {"alice", "bob"}
    assert fanout.too_slow == ()


def test_new_session_is_replayed_the_scrollback_first():
    mux = ConsoleMux()
    mux.backend_output(b"boot messages\r\n")
    mux.attach("alice", INTERACT)
    mux.backend_output(b"login: ")
    assert mux.attach("bob", VIEW) == b"boot messages\r\nlogin: "
    assert mux.stats("bob").bytes_replayed == len(b"boot messages\r\nlogin: ")


def test_scrollback_is_bounded_and_starts_at_a_line_when_it_can():
    mux = ConsoleMux(scrollback_limit=100)
    for n in range(50):
        mux.backend_output(b"line %02d\n" % n)
    replay = mux.attach("late", VIEW)
    assert len(replay) <= 100
    assert replay.startswith(b"line ")
    assert replay.endswith(b"line 49\n")


def test_scrollback_of_a_single_huge_line_is_cut_to_the_limit():
    mux = ConsoleMux(scrollback_limit=10)
    mux.backend_output(b"x" * 1000)
    assert mux.attach("late", VIEW) == b"x" * 10


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(1, 64),
       chunks=st.lists(st.binary(max_size=200).map(lambda b: b.replace(b"\x00", b"\n")),
                       max_size=12))
def test_scrollback_is_what_the_line_rule_keeps_of_all_output_however_it_arrives(
        limit: int, chunks: list[bytes]) -> None:
    """Chunks longer than the scrollback (bulk output) keep the same bytes as the plain rule:
    all output so far, cut at the first line start within 4 KiB past the limit."""
    mux = ConsoleMux(scrollback_limit=limit)
    expected = b""
    for chunk in chunks:
        mux.backend_output(chunk)
        expected += chunk
        excess = len(expected) - limit
        if excess > 0:
            newline = expected.find(b"\n", excess, excess + 4096)
            expected = expected[newline + 1 if newline >= 0 else excess:]
        assert mux.scrollback == expected


def test_view_only_input_is_dropped_and_counted_never_forwarded():
    mux = ConsoleMux()
    mux.attach("viewer", VIEW)
    assert mux.session_input("viewer", b"reboot\r") == b""
    assert mux.session_input("viewer", b"x") == b""
    stats = mux.stats("viewer")
    assert stats.input_dropped_bytes == len(b"reboot\r") + 1
    assert stats.input_dropped_writes == 2
    assert stats.bytes_to_guest == 0


def test_every_interactive_session_may_type_on_the_shared_line():
    mux = ConsoleMux()
    mux.attach("alice", INTERACT)
    mux.attach("bob", INTERACT)
    assert mux.session_input("alice", b"ls\r") == b"ls\r"
    assert mux.session_input("bob", b"id\r") == b"id\r"


def test_break_needs_the_break_privilege():
    mux = ConsoleMux()
    mux.attach("typist", INTERACT)
    mux.attach("viewer", Privileges(send_break=True))  # break without interact: refused
    mux.attach("operator", BREAK)
    assert mux.request_break("typist") is False
    assert mux.request_break("viewer") is False
    assert mux.request_break("operator") is True
    assert mux.stats("typist").breaks_refused == 1
    assert mux.stats("operator").breaks_sent == 1


def test_byte_counters_track_each_session_for_audit():
    mux = ConsoleMux()
    mux.backend_output(b"12345")
    mux.attach("alice", INTERACT)
    mux.backend_output(b"abc")
    mux.session_input("alice", b"hello")
    stats = mux.stats("alice")
    assert (stats.bytes_replayed, stats.bytes_from_guest, stats.bytes_to_guest) == (5, 3, 5)


def test_backend_close_ends_every_session_with_the_reason():
    mux = ConsoleMux()
    mux.attach("alice", INTERACT)
    mux.attach("bob", VIEW)
    mux.session_input("alice", b"x")
    ends = mux.backend_closed("vm console unix:/run/vm01.sock hung up")
    assert {end.session_id for end in ends} == {"alice", "bob"}
    assert {end.reason for end in ends} == {"vm console unix:/run/vm01.sock hung up"}
    assert next(e for e in ends if e.session_id == "alice").stats.bytes_to_guest == 1
    assert mux.closed and mux.empty
    assert mux.backend_closed("again") == []
    with pytest.raises(ConsoleClosed):
        mux.attach("carol", VIEW)


def test_detach_returns_final_counters_and_stops_delivery():
    mux = ConsoleMux()
    mux.attach("alice", INTERACT)
    mux.attach("bob", VIEW)
    end = mux.detach("bob")
    assert end.reason == EndReason.DETACHED.value
    assert mux.backend_output(b"x").session_ids == ("alice",)
    with pytest.raises(SessionUnknown):
        mux.session_input("bob", b"x")


def test_a_session_too_far_behind_is_named_for_closing():
    mux = ConsoleMux(max_lag=10)
    mux.attach("fast", VIEW)
    mux.attach("slow", VIEW)
    mux.backend_output(b"123456")
    mux.delivered("fast", 6)
    fanout = mux.backend_output(b"789012")
    assert fanout.too_slow == ("slow",)


def test_only_interactive_sessions_resize_and_the_latest_size_wins():
    mux = ConsoleMux(window_size=(80, 24))
    mux.attach("viewer", VIEW)
    mux.attach("alice", INTERACT)
    assert mux.request_resize("viewer", 200, 50) is None
    assert mux.request_resize("alice", 80, 24) is None  # unchanged
    assert mux.request_resize("alice", 120, 40) == (120, 40)
    assert mux.window_size == (120, 40)


def test_attaching_twice_under_one_session_id_is_a_bug():
    mux = ConsoleMux()
    mux.attach("alice", VIEW)
    with pytest.raises(ValueError):
        mux.attach("alice", VIEW)


def test_an_interactive_session_is_never_cut_off_for_lagging_it_pauses_the_backend():
    mux = ConsoleMux(max_lag=10, pause_lag=4)
    mux.attach("alice", INTERACT)
    fanout = mux.backend_output(b"0123456789abcdef")
    assert fanout.too_slow == ()
    assert mux.should_pause()
    mux.delivered("alice", 14)
    assert not mux.should_pause()


def test_a_lagging_viewer_does_not_pause_the_console_for_everyone():
    mux = ConsoleMux(max_lag=100, pause_lag=4)
    mux.attach("viewer", VIEW)
    mux.backend_output(b"0123456789")
    assert not mux.should_pause()
