import pytest

from ca.errors import MalformedInputError
from ca.serials import format_serial, new_serial, parse_serial


def test_new_serial_is_positive_and_at_most_159_bits() -> None:
    serials = {new_serial() for _ in range(50)}
    assert len(serials) == 50
    assert all(0 < s < 2**159 for s in serials)


def test_format_is_lowercase_hex_without_separators() -> None:
    assert format_serial(0x4F0C1A) == "4f0c1a"
    assert format_serial(0x0ABC) == "abc"


@pytest.mark.parametrize("text", ["4f0c1a", "0x4F0C1A", "4F:0C:1A", " 4f0c1a\n"])
def test_parse_accepts_openssl_and_prefixed_forms(text: str) -> None:
    assert parse_serial(text) == 0x4F0C1A


@pytest.mark.parametrize("text", ["", "0x", "xyz", "12 34", "-1", "a" * 41])
def test_parse_refuses_non_hex(text: str) -> None:
    with pytest.raises(MalformedInputError, match="not a serial number"):
        parse_serial(text)


def test_format_parse_round_trip() -> None:
    n = new_serial()
    assert parse_serial(format_serial(n)) == n
