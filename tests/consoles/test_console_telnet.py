from certgate.consoles.telnet import BINARY, DO, DONT, IAC, WILL, WONT, TelnetCodec

ECHO = 1
SGA = 3


def test_qemu_greeting_is_stripped_and_options_other_than_binary_refused():
    codec = TelnetCodec()
    greeting = bytes([IAC, WILL, ECHO, IAC, WILL, SGA, IAC, WILL, BINARY, IAC, DO, BINARY])
    payload, replies = codec.decode(greeting + b"login: ")
    assert payload == b"login: "
    assert replies == bytes([IAC, DONT, ECHO, IAC, DONT, SGA, IAC, DO, BINARY, IAC, WILL, BINARY])


def test_each_option_is_answered_once_so_peers_cannot_loop():
    codec = TelnetCodec()
    assert codec.decode(bytes([IAC, WILL, ECHO]))[1] == bytes([IAC, DONT, ECHO])
    assert codec.decode(bytes([IAC, WILL, ECHO]))[1] == b""
    assert codec.decode(bytes([IAC, WONT, ECHO, IAC, DONT, SGA]))[1] == b""


def test_commands_split_across_reads_and_escaped_ff_are_decoded():
    codec = TelnetCodec()
    out1, _ = codec.decode(bytes([ord("a"), IAC]))
    out2, replies = codec.decode(bytes([DO, 24, ord("b"), IAC, IAC, ord("c")]))
    assert out1 + out2 == b"ab\xffc"
    assert replies == bytes([IAC, WONT, 24])


def test_subnegotiation_is_skipped():
    codec = TelnetCodec()
    payload, _ = codec.decode(bytes([ord("x"), IAC, 250, 24, 1, IAC, 240, ord("y")]))
    assert payload == b"xy"


def test_input_escapes_ff_and_break_is_iac_brk():
    assert TelnetCodec.encode(b"a\xffb") == b"a\xff\xffb"
    assert TelnetCodec.break_command() == b"\xff\xf3"
