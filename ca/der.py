"""Minimal DER helpers for splicing pre-encoded parts (the fast AC issuing path)."""


def der_length(n: int) -> bytes:
    """Definite-length octets for a content of ``n`` bytes."""
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    """One tag-length-value with a single-octet tag."""
    return bytes([tag]) + der_length(len(content)) + content


def sequence(*parts: bytes) -> bytes:
    """SEQUENCE of already-encoded parts."""
    return tlv(0x30, b"".join(parts))
