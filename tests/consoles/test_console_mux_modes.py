"""Write modes, force, hand-back, share, moderation, replay and notices: plain calls only."""

from certgate.consoles.mux import (
    ConsoleMux,
    EndReason,
    Moderation,
    Notice,
    ObserverLeft,
    Privileges,
    SessionEnd,
    WriteMode,
    tail_lines,
)

VIEW = Privileges()
INTERACT = Privileges(interact=True)
FORCE = Privileges(interact=True, force=True)
SECURITY = Moderation("role=security")


def notices_for(mux: ConsoleMux, session_id: str) -> list[str]:
    return [e.text for e in mux.drain_events()
            if isinstance(e, Notice) and session_id in e.session_ids]


def exclusive() -> ConsoleMux:
    return ConsoleMux(write_mode=WriteMode.EXCLUSIVE)


def test_exclusive_console_lets_only_the_first_typist_write():
    mux = exclusive()
    mux.attach("a", INTERACT, user="alice")
    mux.attach("b", INTERACT, user="bob")
    assert mux.session_input("a", b"ls\r") == b"ls\r"
    assert mux.session_input("b", b"rm -rf /\r") == b""
    assert mux.stats("b").input_dropped_bytes == len(b"rm -rf /\r")
    assert mux.mode_of("a") == "writer" and mux.mode_of("b") == "watching"


def test_the_second_typist_is_told_who_has_the_keyboard():
    mux = exclusive()
    mux.attach("a", INTERACT, user="alice")
    mux.drain_events()
    mux.attach("b", INTERACT, user="bob")
    events = mux.drain_events()
    assert Notice("bob attached (interactive)", ("a",)) in events
    assert Notice("exclusive console: alice has the keyboard; you are watching",
                  ("b",)) in events


def test_take_without_force_is_refused_while_someone_writes():
    mux = exclusive()
    mux.attach("a", INTERACT, user="alice")
    mux.attach("b", FORCE, user="bob")
    assert mux.take("b") == ("alice has the keyboard (force takes it, with the "
                             "console.force privilege)")
    assert mux.writer == "a"


def test_force_needs_the_force_privilege():
    mux = exclusive()
    mux.attach("a", INTERACT, user="alice")
    mux.attach("b", INTERACT, user="bob")
    assert mux.take("b", force=True) == ("taking the keyboard by force needs the "
                                         "console.force privilege")
    assert mux.session_input("b", b"x") == b""


def test_force_moves_the_keyboard_and_tells_the_previous_writer():
    mux = exclusive()
    mux.attach("a", INTERACT, user="alice")
    mux.attach("b", FORCE, user="bob")
    mux.drain_events()
    assert mux.take("b", force=True) is None
    events = mux.drain_events()
    assert Notice("bob took the keyboard; you are now watching", ("a",)) in events
    assert Notice("bob took the keyboard from alice", ("b",)) in events
    assert mux.session_input("b", b"id\r") == b"id\r"
    assert mux.session_input("a", b"ls\r") == b""


def test_hand_back_returns_the_keyboard_to_whoever_had_it_before():
    mux = exclusive()
    mux.attach("a", INTERACT, user="alice")
    mux.attach("c", INTERACT, user="carol")
    mux.attach("b", FORCE, user="bob")
    mux.take("b", force=True)
    mux.drain_events()
    assert mux.hand_back("b") is None
    assert mux.writer == "a"
    assert "alice has the keyboard" in notices_for(mux, "c")
    assert mux.hand_back("b") == "you do not have the keyboard"


def test_when_the_writer_leaves_the_longest_waiting_typist_gets_the_keyboard():
    mux = exclusive()
    mux.attach("v", VIEW, user="victor")
    mux.attach("a", INTERACT, user="alice")
    mux.attach("b", INTERACT, user="bob")
    mux.attach("c", INTERACT, user="carol")
    mux.drain_events()
    mux.detach("a")
    assert mux.writer == "b"
    assert notices_for(mux, "v") == ["alice left", "bob has the keyboard"]


def test_sharing_lets_everyone_type_until_someone_takes_the_keyboard():
    mux = exclusive()
    mux.attach("a", INTERACT, user="alice")
    mux.attach("b", INTERACT, user="bob")
    assert mux.share("b") == "only the session holding the keyboard can share it"
    assert mux.share("a") is None
    assert mux.session_input("b", b"x") == b"x"
    assert mux.mode_of("b") == "may type"
    assert mux.take("b") is None  # no force needed once shared
    assert mux.session_input("a", b"y") == b""
    assert mux.session_input("b", b"z") == b"z"


def test_shared_console_has_no_keyboard_to_take():
    mux = ConsoleMux()
    mux.attach("a", INTERACT)
    mux.attach("b", INTERACT)
    assert mux.take("a", force=True) == ("this console is shared: everyone with interact "
                                         "may already type")
    assert mux.session_input("b", b"x") == b"x"


def test_a_viewer_can_neither_take_nor_type():
    mux = exclusive()
    mux.attach("v", Privileges(force=True))
    assert mux.take("v", force=True) == "this session is view-only"
    assert mux.writer is None


def test_switching_to_exclusive_gives_the_keyboard_to_the_earliest_typist():
    mux = ConsoleMux()
    mux.attach("a", INTERACT, user="alice")
    mux.attach("b", INTERACT, user="bob")
    mux.set_write_mode(WriteMode.EXCLUSIVE)
    assert mux.writer == "a"
    assert mux.session_input("b", b"x") == b""


def test_moderated_session_is_held_until_an_observer_watches():
    mux = ConsoleMux()
    mux.attach("a", INTERACT, user="alice", moderation=SECURITY)
    events = mux.drain_events()
    assert Notice("this console is moderated: input is held until an observer "
                  "(role=security) is attached", ("a",)) in events
    assert mux.session_input("a", b"ls\r") == b""
    assert mux.request_break("a") is False
    # An interactive security user does not count: the observer must be view-only.
    mux.attach("s1", INTERACT, user="sam", tags={"role=security"})
    assert mux.session_input("a", b"ls\r") == b""
    mux.attach("o", VIEW, user="olga", tags={"role=ops"})
    assert mux.mode_of("a") == "held"
    mux.drain_events()
    mux.attach("s2", VIEW, user="sec", tags={"role=security"})
    assert ("an observer (role=security) is watching: input is enabled"
            in notices_for(mux, "a"))
    assert mux.session_input("a", b"ls\r") == b"ls\r"
    assert mux.mode_of("s2") == "observer"


def test_moderated_session_pauses_when_the_observer_leaves():
    mux = ConsoleMux()
    mux.attach("a", INTERACT, user="alice", moderation=SECURITY)
    mux.attach("s", VIEW, user="sec", tags={"role=security"})
    mux.drain_events()
    mux.detach("s")
    assert ("the observer (role=security) left: input is held until one is attached again"
            in notices_for(mux, "a"))
    assert mux.session_input("a", b"x") == b""
    assert "a" in mux.session_ids


def test_moderated_session_ends_when_the_rule_says_so():
    mux = ConsoleMux()
    mux.attach("a", INTERACT, user="alice",
               moderation=Moderation("role=security", ObserverLeft.END))
    mux.attach("b", INTERACT, user="bob")
    mux.attach("s", VIEW, user="sec", tags={"role=security"})
    mux.drain_events()
    mux.detach("s")
    events = mux.drain_events()
    ends = [e for e in events if isinstance(e, SessionEnd)]
    assert [(e.session_id, e.reason) for e in ends] == [("a", EndReason.OBSERVER_LEFT.value)]
    assert mux.session_ids == ("b",)
    assert Notice("alice left: the required observer left", ("b",)) in events


def test_moderated_writer_on_an_exclusive_console_waits_for_the_observer():
    mux = exclusive()
    mux.attach("a", INTERACT, user="alice", moderation=SECURITY)
    assert mux.writer is None
    mux.attach("s", VIEW, user="sec", tags={"role=security"})
    assert mux.writer == "a"
    mux.detach("s")
    assert mux.writer is None


def test_attach_replays_the_last_lines_not_the_whole_scrollback():
    mux = ConsoleMux(replay_lines=3)
    for n in range(10):
        mux.backend_output(b"line %d\r\n" % n)
    mux.backend_output(b"login: ")
    assert mux.attach("a", VIEW) == b"line 7\r\nline 8\r\nline 9\r\nlogin: "
    assert mux.replay("a", 1) == b"line 9\r\nlogin: "
    assert mux.stats("a").bytes_replayed == len(b"line 7\r\nline 8\r\nline 9\r\nlogin: ") + len(
        b"line 9\r\nlogin: ")


def test_tail_lines_counts_complete_lines_and_keeps_a_prompt():
    assert tail_lines(b"a\nb\nc\n", 2) == b"b\nc\n"
    assert tail_lines(b"a\nb\n", 5) == b"a\nb\n"
    assert tail_lines(b"a\nb\nprompt$ ", 1) == b"b\nprompt$ "
    assert tail_lines(b"anything", 0) == b""


def test_notices_go_to_users_and_never_into_guest_input():
    mux = ConsoleMux()
    mux.attach("a", INTERACT, user="alice")
    mux.attach("b", VIEW, user="bob")
    events = mux.drain_events()
    assert all(isinstance(e, Notice) for e in events)
    assert mux.drain_events() == []
    assert mux.session_input("a", b"x") == b"x"  # nothing else is queued for the guest


def test_a_lost_kept_backend_keeps_sessions_and_drops_input_until_restored():
    mux = ConsoleMux()
    mux.attach("a", INTERACT, user="alice")
    mux.drain_events()
    mux.backend_lost("vm console unix:/x hung up")
    assert notices_for(mux, "a") == [
        "console connection lost (vm console unix:/x hung up); reconnecting"]
    assert mux.session_input("a", b"x") == b""
    mux.backend_restored(2.5)
    assert notices_for(mux, "a") == ["console reconnected after 2.5s"]
    assert mux.session_input("a", b"x") == b"x"


def test_who_lists_every_session_with_its_mode():
    mux = exclusive()
    mux.attach("a", INTERACT, user="alice")
    mux.attach("b", INTERACT, user="bob")
    mux.attach("v", VIEW, user="victor")
    assert [(a.user, a.mode) for a in mux.who()] == [
        ("alice", "writer"), ("bob", "watching"), ("victor", "watching")]


def test_force_and_moderation_changes_are_marked_for_the_audit_log():
    mux = exclusive()
    mux.attach("a", INTERACT, user="alice")
    mux.attach("b", FORCE, user="bob")
    mux.drain_events()
    mux.take("b", force=True)
    audited = [e for e in mux.drain_events() if isinstance(e, Notice) and e.audit]
    assert [(e.audit, e.details["user"], e.details["from_user"]) for e in audited] == [
        ("console.keyboard.force", "bob", "alice")]

    moderated = ConsoleMux()
    moderated.attach("c", INTERACT, user="carl", moderation=SECURITY)
    moderated.attach("s", VIEW, user="sam", tags={"role=security"})
    moderated.detach("s")
    kinds = [e.audit for e in moderated.drain_events() if isinstance(e, Notice) and e.audit]
    assert kinds == ["console.moderation.held", "console.moderation.released",
                     "console.moderation.held"]
