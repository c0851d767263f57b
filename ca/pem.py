"""Strict, linear-time PEM decoding for input from outside.

asn1crypto's ``pem.unarmor`` is quadratic in the input size (a 4 MB file took minutes) and
both it and the ``cryptography`` loaders read the first block and ignore whatever follows.
Input here is a single block, optionally surrounded by white space: anything else (a second
block, trailing text, headers, bad base64) is refused, so what was checked is what was used.
"""

from __future__ import annotations

import binascii
import re

from ca.errors import MalformedInputError

MAX_INPUT_BYTES = 1 << 20
"""No certificate, CSR, key or attribute certificate we accept comes near 1 MiB."""

_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9][A-Z0-9 ]{0,63})-----\r?\n"
    rb"((?:[A-Za-z0-9+/=]{1,1024}\r?\n)*)"
    rb"-----END ([A-Z0-9][A-Z0-9 ]{0,63})-----"
)
_BEGIN = b"-----BEGIN "


def looks_like_pem(data: bytes) -> bool:
    """True when ``data`` (after leading white space) starts a PEM block."""
    return data.lstrip()[: len(_BEGIN)] == _BEGIN


def check_size(data: bytes, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    if len(data) > limit:
        raise MalformedInputError(f"{what} is too large ({len(data)} bytes; at most {limit})")
    return data


def decode_pem(data: bytes, labels: tuple[str, ...], what: str) -> tuple[str, bytes]:
    """The label and DER of the one PEM block in ``data``, whose label must be in ``labels``."""
    check_size(data, what)
    body = data.strip()
    match = _BLOCK.fullmatch(body)
    if match is None:
        if body.count(_BEGIN) > 1:
            raise MalformedInputError(f"{what}: more than one PEM block (give exactly one)")
        first = _BLOCK.match(body)
        if first is not None:
            raise MalformedInputError(f"{what}: unexpected data after the PEM block")
        raise MalformedInputError(
            f"{what}: malformed PEM (expected one BEGIN/END block of base64 lines)"
        )
    label, end_label = match.group(1).decode("ascii"), match.group(3).decode("ascii")
    if label != end_label:
        raise MalformedInputError(f"{what}: PEM block begins {label!r} but ends {end_label!r}")
    if label not in labels:
        expected = " or ".join(repr(x) for x in labels)
        raise MalformedInputError(f"{what}: expected a PEM block labelled {expected}, "
                                  f"found {label!r}")
    try:
        der = binascii.a2b_base64(b"".join(match.group(2).split()), strict_mode=True)
    except binascii.Error as exc:
        raise MalformedInputError(f"{what}: PEM body is not valid base64 ({exc})") from None
    if not der:
        raise MalformedInputError(f"{what}: empty PEM block")
    return label, der
