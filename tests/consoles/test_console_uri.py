import pytest

from certgate.consoles import (
    ConsoleURIError,
    ExecConsole,
    SshConsole,
    TcpConsole,
    UnixSocketConsole,
    parse_console_uri,
)


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("unix:/run/vm/vm01.sock", UnixSocketConsole("/run/vm/vm01.sock"), None),
        ("unix:///run/vm01.sock", UnixSocketConsole("/run/vm01.sock"), "unix:/run/vm01.sock"),
        ("unix:/run/vm01.sock?telnet", UnixSocketConsole("/run/vm01.sock", telnet=True), None),
        ("tcp:127.0.0.1:4555", TcpConsole("127.0.0.1", 4555), None),
        ("tcp://hv1.example:4555", TcpConsole("hv1.example", 4555), "tcp:hv1.example:4555"),
        ("tcp:[::1]:4555?telnet", TcpConsole("::1", 4555, telnet=True), None),
        ("exec:virsh console vm01", ExecConsole(("virsh", "console", "vm01")), None),
        (
            "exec:xl console 'dom with space'",
            ExecConsole(("xl", "console", "dom with space")),
            None,
        ),
        ("ssh://root@10.0.0.5", SshConsole("root", "10.0.0.5"), None),
        ("ssh://ops@guest.example:2222", SshConsole("ops", "guest.example", 2222), None),
        ("ssh://ops@[fe80::1]:22", SshConsole("ops", "fe80::1"), "ssh://ops@[fe80::1]"),
    ],
)
def test_valid_uris_parse_and_print_canonically(text, expected, canonical):
    target = parse_console_uri(text)
    assert target == expected
    assert str(target) == (canonical or text)
    assert parse_console_uri(str(target)) == target


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("/run/vm01.sock", "no scheme"),
        ("serial:/dev/ttyS0", "unknown scheme"),
        ("unix:relative.sock", "absolute"),
        ("unix:/x.sock?raw", "unknown option"),
        ("tcp:127.0.0.1", "port is required"),
        ("tcp:127.0.0.1:0", "1-65535"),
        ("tcp:127.0.0.1:http", "1-65535"),
        ("tcp:::1:22", "IPv6"),
        ("tcp:bad_host!:22", "not a valid host"),
        ("exec:", "no command"),
        ("exec:virsh 'unclosed", "quotation"),
        ("ssh://10.0.0.5", "user is required"),
        ("ssh:root@10.0.0.5", "ssh://USER@HOST"),
        ("ssh://ro ot@h", "not a valid user"),
    ],
)
def test_invalid_uris_raise_a_one_line_reason(text, fragment):
    with pytest.raises(ConsoleURIError) as info:
        parse_console_uri(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
