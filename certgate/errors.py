"""Error types of the certgate application.

Every error a user can provoke is one of these (or a ``ca.errors.CAError``); the CLI turns
both into one line on stderr and a non-zero exit, so messages must be actionable on their own.
"""


class CertgateError(Exception):
    """Base of every certgate error with a message meant for a person."""


class HomeError(CertgateError):
    """The installation directory is missing, incomplete or misconfigured."""


class NotFoundError(CertgateError):
    """A named user, serial, VM or record does not exist."""


class ConflictError(CertgateError):
    """The operation would duplicate or contradict existing state."""


class StoreError(CertgateError):
    """The database could not be reached or is not at the expected schema."""


class AuditError(CertgateError):
    """The audit log could not be written; callers must fail closed."""
