"""The escape menu parser: a pure state machine, fed bytes the way a terminal sends them."""

import pytest

from certgate.consoles.escape import (
    Command,
    EscapeParser,
    EscapeSequence,
    EscapeSpecError,
    Forward,
    MenuCommand,
    UnknownCommand,
    help_text,
)

CTRL_E = b"\x05"


def test_plain_typing_passes_through_untouched():
    assert EscapeParser().feed(b"ls -l\r") == [Forward(b"ls -l\r")]


def test_escape_then_a_command_key_is_a_command_and_nothing_is_forwarded():
    parser = EscapeParser()
    assert parser.feed(b"ab" + CTRL_E + b"cw" + b"cd") == [
        Forward(b"ab"), MenuCommand(Command.WHO), Forward(b"cd")]


def test_the_prefix_may_arrive_one_key_per_read():
    parser = EscapeParser()
    assert parser.feed(CTRL_E) == []
    assert parser.in_menu
    assert parser.feed(b"c") == []
    assert parser.feed(b".") == [MenuCommand(Command.DETACH)]
    assert not parser.in_menu


def test_the_first_key_alone_still_reaches_the_guest():
    parser = EscapeParser()
    assert parser.feed(CTRL_E + b"x") == [Forward(CTRL_E + b"x")]
    assert parser.feed(CTRL_E + CTRL_E + b"y") == [Forward(CTRL_E + CTRL_E + b"y")]


def test_replay_takes_an_optional_count():
    parser = EscapeParser()
    assert parser.feed(CTRL_E + b"cr") == [MenuCommand(Command.REPLAY, 20)]
    assert parser.feed(CTRL_E + b"c50r") == [MenuCommand(Command.REPLAY, 50)]
    assert parser.feed(CTRL_E + b"c99999r") == [MenuCommand(Command.REPLAY, 10_000)]


def test_every_menu_key_maps_to_its_command():
    parser = EscapeParser()
    keys = {"?": Command.HELP, "b": Command.BREAK, "a": Command.TAKE, "f": Command.FORCE,
            "h": Command.HAND_BACK, "s": Command.SHARE, ".": Command.DETACH}
    for key, command in keys.items():
        assert parser.feed(CTRL_E + b"c" + key.encode()) == [MenuCommand(command)]


def test_unknown_menu_key_is_reported_and_swallowed():
    assert EscapeParser().feed(CTRL_E + b"cZq") == [UnknownCommand(ord("Z")), Forward(b"q")]


def test_the_escape_sequence_itself_can_be_sent_to_the_guest():
    assert EscapeParser().feed(CTRL_E + b"ce") == [Forward(CTRL_E + b"c")]


def test_the_escape_sequence_is_configurable():
    parser = EscapeParser(EscapeSequence.parse("^Ak"))
    assert parser.feed(CTRL_E + b"cw") == [Forward(CTRL_E + b"cw")]
    assert parser.feed(b"\x01k.") == [MenuCommand(Command.DETACH)]
    assert parser.sequence.spec == "^Ak"


@pytest.mark.parametrize("spec", ["", "^E", "Ec", "^e c", "^Ec\n", "^E ", "^E\x00", "^Ecc"])
def test_bad_escape_settings_are_refused_with_a_clear_message(spec):
    with pytest.raises(EscapeSpecError, match="must be a control key and a printable key"):
        EscapeSequence.parse(spec)


def test_help_names_the_configured_sequence():
    lines = help_text(EscapeSequence.parse("^Ak"))
    assert lines[0] == "escape menu: ^Ak then"
    assert any(line.split()[0] == "f" for line in lines[1:])
