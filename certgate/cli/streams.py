"""Reading command inputs and writing command outputs (files or the standard streams)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ca.files import write_atomically
from ca.pem import MAX_INPUT_BYTES
from certgate.display import printable
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


def say(text: str, *, err: bool = False) -> None:
    """Echo a line that carries outside data (certificate fields, names, audit values),
    with control and invisible formatting characters escaped for the terminal."""
    click.echo(printable(text), err=err)


def read_input(path: str, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a file (``-``: stdin), at most ``limit`` of them: a larger input (or an
    endless one such as /dev/zero) is refused before it is held in memory."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with Path(path).open("rb") as handle:
                data = handle.read(limit + 1)
    except OSError as exc:
        raise CertgateError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if len(data) > limit:
        raise CertgateError(f"{what} {path} is too large (more than {limit} bytes)")
    return data
