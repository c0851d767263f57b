"""The guest-console side of the gateway.

``parse_console_uri`` reads where a console lives, ``open_console`` opens it,
``ConsoleMux`` decides who sees and types what, and ``ConsoleHub`` shares one backend
connection among the gateway's sessions. See docs/consoles.md.
"""

from certgate.consoles.backends import ConsoleConnection, UpstreamSshOptions, open_console
from certgate.consoles.errors import (
    ConsoleClosed,
    ConsoleError,
    ConsoleUnavailable,
    ConsoleURIError,
    SessionUnknown,
)
from certgate.consoles.hub import Attachment, ConsoleHub
from certgate.consoles.mux import (
    ConsoleMux,
    EndReason,
    Fanout,
    Privileges,
    SessionEnd,
    SessionStats,
)
from certgate.consoles.uri import (
    ConsoleTarget,
    ExecConsole,
    SshConsole,
    TcpConsole,
    UnixSocketConsole,
    parse_console_uri,
)

__all__ = [
    "Attachment",
    "ConsoleClosed",
    "ConsoleConnection",
    "ConsoleError",
    "ConsoleHub",
    "ConsoleMux",
    "ConsoleTarget",
    "ConsoleURIError",
    "ConsoleUnavailable",
    "EndReason",
    "ExecConsole",
    "Fanout",
    "Privileges",
    "SessionEnd",
    "SessionStats",
    "SessionUnknown",
    "SshConsole",
    "TcpConsole",
    "UnixSocketConsole",
    "UpstreamSshOptions",
    "open_console",
    "parse_console_uri",
]
