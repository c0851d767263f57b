"""The error of a failed packet-filter operation."""

from __future__ import annotations

from certgate.errors import CertgateError


class FirewallError(CertgateError):
    """The packet filter refused a ruleset or could not be read; the loaded one is unchanged."""
