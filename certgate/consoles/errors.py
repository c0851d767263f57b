"""Errors raised by the console layer.

Each carries one line a person can act on: the gateway shows it to the user (without a
traceback) and writes it to the audit log.
"""

from certgate.errors import CertgateError


class ConsoleError(CertgateError):
    """Base of every console-layer error."""


class ConsoleURIError(ConsoleError):
    """A console URI in the configuration is malformed."""


class ConsoleUnavailable(ConsoleError):
    """The VM console could not be opened (socket refused, command failed, SSH refused)."""


class SessionUnknown(ConsoleError):
    """A multiplexer call named a session that is not attached."""


class ConsoleClosed(ConsoleError):
    """The console's backend has hung up; no further sessions can attach to it."""
