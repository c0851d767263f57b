"""Serial numbers: one random form, one printed form, a tolerant parser.

Serials are printed as lowercase hex without separators (the digits
``openssl x509 -serial`` prints) because they exceed SQL integer sizes.
"""

import re

from cryptography import x509

from ca.errors import MalformedInputError

_HEX = re.compile(r"[0-9a-f]+")


def new_serial() -> int:
    """A fresh positive serial with 159 random bits (RFC 5280 allows at most 20 octets)."""
    return x509.random_serial_number()


def format_serial(n: int) -> str:
    """Lowercase hex, no prefix or separators."""
    if n < 0:
        raise MalformedInputError(f"serial number must not be negative (got {n})")
    return format(n, "x")


def parse_serial(text: str) -> int:
    """Parse a serial as printed by certgate or openssl (``0x``, colons, upper case allowed)."""
    cleaned = text.strip().lower()
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    cleaned = cleaned.replace(":", "")
    if not cleaned or len(cleaned) > 40 or not _HEX.fullmatch(cleaned):
        raise MalformedInputError(
            f"not a serial number: {text!r} (expected hexadecimal digits, e.g. 4f0c1a)"
        )
    return int(cleaned, 16)
