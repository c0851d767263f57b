"""Console URIs: where a VM's console lives, as written in the gateway configuration.

Four shapes, each a frozen dataclass whose ``str()`` is the canonical URI:

* ``unix:/run/vm/vm01.sock`` -- a QEMU ``-chardev socket`` on a Unix socket; append
  ``?telnet`` when QEMU runs that chardev with ``telnet=on`` (then breaks can be sent).
* ``tcp:HOST:PORT`` (also ``tcp://HOST:PORT``; IPv6 as ``[::1]:PORT``) -- the same over TCP,
  ``?telnet`` likewise. Any host is accepted syntactically: operators point it at their own
  hypervisor (usually ``127.0.0.1``); the console is unauthenticated, so never at a network
  anyone else can reach.
* ``exec:virsh console vm01`` -- a command run in a pseudo-terminal (``virsh console``,
  ``xl console``); the rest of the line is split like a POSIX shell would (``shlex``),
  but no shell runs it.
* ``ssh://USER@HOST[:PORT]`` -- the guest's own sshd; each gateway session gets its own
  upstream connection.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass

from certgate.consoles.errors import ConsoleURIError

_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_PORT = re.compile(r"[0-9]{1,5}")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class UnixSocketConsole:
    """A QEMU chardev socket on a Unix-domain socket path."""

    path: str
    telnet: bool = False

    def __str__(self) -> str:
        return f"unix:{self.path}" + ("?telnet" if self.telnet else "")


@dataclass(frozen=True)
class TcpConsole:
    """A QEMU chardev socket on TCP (``-chardev socket,host=...,port=...``)."""

    host: str
    port: int
    telnet: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}" + ("?telnet" if self.telnet else "")


@dataclass(frozen=True)
class ExecConsole:
    """A console command run in a pty, e.g. ``("virsh", "console", "vm01")``."""

    argv: tuple[str, ...]

    def __str__(self) -> str:
        return "exec:" + shlex.join(self.argv)


@dataclass(frozen=True)
class SshConsole:
    """An SSH server inside (or in front of) the guest."""

    user: str
    host: str
    port: int = 22

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == 22 else f":{self.port}"
        return f"ssh://{self.user}@{host}{port}"


ConsoleTarget = UnixSocketConsole | TcpConsole | ExecConsole | SshConsole


def parse_console_uri(text: str) -> ConsoleTarget:
    """Parse a console URI; raise ConsoleURIError with a one-line reason when it is invalid."""
    text = text.strip()
    scheme, sep, rest = text.partition(":")
    if not sep:
        raise ConsoleURIError(f"console URI {text!r} has no scheme (unix:, tcp:, exec:, ssh://)")
    scheme = scheme.lower()
    if scheme == "unix":
        return _parse_unix(text, rest)
    if scheme == "tcp":
        return _parse_tcp(text, rest)
    if scheme == "exec":
        return _parse_exec(text, rest)
    if scheme == "ssh":
        return _parse_ssh(text, rest)
    raise ConsoleURIError(
        f"console URI {text!r}: unknown scheme {scheme!r} (expected unix, tcp, exec or ssh)"
    )


def _split_options(text: str, rest: str) -> tuple[str, bool]:
    body, sep, query = rest.partition("?")
    if not sep:
        return body, False
    if query != "telnet":
        raise ConsoleURIError(f"console URI {text!r}: unknown option {query!r} (only 'telnet')")
    return body, True


def _parse_unix(text: str, rest: str) -> UnixSocketConsole:
    path, telnet = _split_options(text, rest)
    if path.startswith("//"):
        path = path[2:]
    if not path.startswith("/"):
        raise ConsoleURIError(f"console URI {text!r}: the socket path must be absolute")
    if "\0" in path:
        raise ConsoleURIError(f"console URI {text!r}: the socket path contains a NUL byte")
    return UnixSocketConsole(path=path, telnet=telnet)


def _split_host_port(text: str, hostport: str, *, port_required: bool) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ConsoleURIError(f"console URI {text!r}: unclosed '[' in the host")
        host, after = hostport[1:end], hostport[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConsoleURIError(
                f"console URI {text!r}: {host!r} is not an IPv6 address"
            ) from None
        if after and not after.startswith(":"):
            raise ConsoleURIError(f"console URI {text!r}: unexpected {after!r} after the host")
        port_text = after[1:] if after else None
    else:
        host, sep, port_text_s = hostport.rpartition(":")
        if not sep:
            host, port_text = hostport, None
        else:
            port_text = port_text_s
        if ":" in host:
            raise ConsoleURIError(f"console URI {text!r}: write an IPv6 host as [ADDRESS]")
        if not _HOSTNAME.fullmatch(host):
            raise ConsoleURIError(f"console URI {text!r}: {host!r} is not a valid host name")
    if port_text is None:
        if port_required:
            raise ConsoleURIError(f"console URI {text!r}: a port is required (HOST:PORT)")
        return host, None
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise ConsoleURIError(f"console URI {text!r}: port {port_text!r} is not 1-65535")
    return host, int(port_text)


def _parse_tcp(text: str, rest: str) -> TcpConsole:
    body, telnet = _split_options(text, rest)
    if body.startswith("//"):
        body = body[2:]
    host, port = _split_host_port(text, body.rstrip("/"), port_required=True)
    assert port is not None
    return TcpConsole(host=host, port=port, telnet=telnet)


def _parse_exec(text: str, rest: str) -> ExecConsole:
    try:
        argv = tuple(shlex.split(rest))
    except ValueError as exc:
        raise ConsoleURIError(f"console URI {text!r}: {exc}") from None
    if not argv:
        raise ConsoleURIError(f"console URI {text!r}: no command after 'exec:'")
    return ExecConsole(argv=argv)


def _parse_ssh(text: str, rest: str) -> SshConsole:
    if not rest.startswith("//"):
        raise ConsoleURIError(f"console URI {text!r}: write it as ssh://USER@HOST[:PORT]")
    body = rest[2:].rstrip("/")
    user, sep, hostport = body.rpartition("@")
    if not sep or not user:
        raise ConsoleURIError(f"console URI {text!r}: the upstream user is required (USER@HOST)")
    if not _USER.fullmatch(user):
        raise ConsoleURIError(f"console URI {text!r}: {user!r} is not a valid user name")
    host, port = _split_host_port(text, hostport, port_required=False)
    return SshConsole(user=user, host=host, port=22 if port is None else port)
