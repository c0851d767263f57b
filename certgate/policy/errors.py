"""The error raised for an invalid policy document."""

from __future__ import annotations

from certgate.errors import CertgateError


class PolicyError(CertgateError):
    """A policy document is invalid; the message names the place: ``FILE:LINE:COL: PATH: problem``.

    ``path`` is the dotted path into the document (``rules[2].require.clearance``, rules are
    counted from 0); it is empty for YAML syntax errors and problems of the document as a whole.
    """

    def __init__(self, source_name: str, line: int, column: int, path: str, problem: str) -> None:
        self.source_name = source_name
        self.line = line
        self.column = column
        self.path = path
        self.problem = " ".join(problem.split())
        where = f"{source_name}:{line}:{column}"
        message = f"{where}: {path}: {self.problem}" if path else f"{where}: {self.problem}"
        super().__init__(message)
