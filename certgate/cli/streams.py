"""Reading command inputs and writing command outputs (files or the standard streams)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ca.files import write_atomically
from certgate.errors import CertgateError


def write_output(path: str | None, data: bytes, *, private: bool = False) -> None:
    """Write to a file atomically (0600 when private), or to stdout when no path is given."""
    if path is None or path == "-":
        if data.isascii():
            click.echo(data.decode("ascii"), nl=False)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        return
    try:
        write_atomically(Path(path), data, 0o600 if private else 0o644)
    except OSError as exc:
        raise CertgateError(f"cannot write {path}: {exc.strerror or exc}") from exc


def read_input(path: str, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CertgateError(f"cannot read {what} {path}: {exc.strerror}") from exc
