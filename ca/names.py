"""Validation of the names that end up inside certificates.

Names are checked before signing: a certificate cannot be recalled cheaply, so
a typo or an injected separator must be refused up front.
"""

import re

from ca.errors import MalformedInputError

USER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
HOST_NAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)
TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def check_user_name(name: str) -> str:
    """A user name: lowercase letters, digits, ``._-``, at most 64 characters."""
    if not USER_NAME.fullmatch(name):
        raise MalformedInputError(
            f"invalid user name {name!r}: use a-z, 0-9, '.', '_', '-' "
            "(start with a letter or digit, at most 64 characters)"
        )
    return name


def check_host_name(name: str) -> str:
    """A lowercase DNS host name."""
    if not HOST_NAME.fullmatch(name):
        raise MalformedInputError(f"invalid host name {name!r}: expected a lowercase DNS name")
    return name


def check_target_name(name: str, what: str) -> str:
    """A gateway or VM name used in AC targeting URIs."""
    if not TARGET_NAME.fullmatch(name):
        raise MalformedInputError(
            f"invalid {what} name {name!r}: use letters, digits, '.', '_', '-' "
            "(at most 128 characters)"
        )
    return name


def check_common_name(name: str) -> str:
    """A subject common name: 1..64 printable characters (X.520 ub-common-name)."""
    if not name or len(name) > 64 or not name.isprintable() or name != name.strip():
        raise MalformedInputError(
            f"invalid common name {name!r}: 1 to 64 printable characters, no outer spaces"
        )
    return name


def check_email(address: str) -> str:
    """An ASCII e-mail address (rfc822Name)."""
    if not EMAIL.fullmatch(address) or len(address) > 254:
        raise MalformedInputError(f"invalid e-mail address {address!r}")
    return address
