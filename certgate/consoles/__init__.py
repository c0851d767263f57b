"""The guest-console side of the gateway.

``parse_console_uri`` reads where a console lives, ``open_console`` opens it,
``ConsoleMux`` decides who sees and types what, and ``ConsoleHub`` shares one backend
connection among the gateway's sessions. See docs/consoles.md.

Names are imported from their modules when first used (PEP 562): the fleet and the CLI only
parse console URIs, and must not pay for asyncssh (the SSH backend) on every command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from certgate.lazy_exports import LazyExports

if TYPE_CHECKING:
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

_MODULE_OF = {
    "ConsoleConnection": "backends",
    "UpstreamSshOptions": "backends",
    "open_console": "backends",
    "ConsoleClosed": "errors",
    "ConsoleError": "errors",
    "ConsoleUnavailable": "errors",
    "ConsoleURIError": "errors",
    "SessionUnknown": "errors",
    "Attachment": "hub",
    "ConsoleHub": "hub",
    "ConsoleMux": "mux",
    "EndReason": "mux",
    "Fanout": "mux",
    "Privileges": "mux",
    "SessionEnd": "mux",
    "SessionStats": "mux",
    "ConsoleTarget": "uri",
    "ExecConsole": "uri",
    "SshConsole": "uri",
    "TcpConsole": "uri",
    "UnixSocketConsole": "uri",
    "parse_console_uri": "uri",
}

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


_EXPORTS = LazyExports(__name__, _MODULE_OF, globals())


def __getattr__(name: str) -> Any:
    return _EXPORTS.load(name)


def __dir__() -> list[str]:
    return _EXPORTS.names()
