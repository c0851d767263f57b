"""HTTPS for the review site: a server certificate from certgate's own CA, and client
certificates from it too (mutual TLS is optional per connection: a browser without one can
still sign in with a link).

The web server key is ECDSA P-256 (browsers do not accept Ed25519 server certificates) and
is stored like every other key in the home: PKCS#8, encrypted with the installation
passphrase, mode 0600. A certificate that is missing, for other names, or within
``RENEW_BEFORE`` of expiry is re-issued at start-up.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca import authority as builders
from ca import keys
from ca.serials import format_serial
from certgate.installation import Installation

RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class WebCertificate:
    cert_path: Path
    key_path: Path
    serial: str
    not_after: datetime
    issued_now: bool


def cert_paths(installation: Installation) -> tuple[Path, Path]:
    gateway_dir = installation.home.gateway_dir
    return gateway_dir / "web.pem", gateway_dir / "web.key"


def default_names(installation: Installation, listen_host: str) -> list[str]:
    names = [installation.config.gateway_name, "localhost", "127.0.0.1"]
    if listen_host not in ("0.0.0.0", "::", ""):
        names.insert(1, listen_host)
    return list(dict.fromkeys(names))


def _names_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return ({str(n) for n in san.get_values_for_type(x509.DNSName)}
            | {str(n) for n in san.get_values_for_type(x509.IPAddress)})


def _wanted(names: Sequence[str]) -> set[str]:
    result = set()
    for name in names:
        try:
            result.add(str(ipaddress.ip_address(name)))
        except ValueError:
            result.add(name)
    return result


def ensure_server_certificate(installation: Installation, names: Sequence[str],
                              *, now: datetime | None = None) -> WebCertificate:
    """The web server's certificate, issued (and audited) when missing, stale or renamed."""
    now = now or datetime.now(UTC)
    cert_path, key_path = cert_paths(installation)
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        fresh = cert.not_valid_after_utc - now > RENEW_BEFORE
        if fresh and _names_of(cert) == _wanted(names):
            return WebCertificate(cert_path, key_path, format_serial(cert.serial_number),
                                  cert.not_valid_after_utc, issued_now=False)
    key = keys.generate_private_key("ecdsa-p256")
    cert = builders.build_tls_server_certificate(
        installation.root_certificate, installation.ca.root_key, key.public_key(), list(names))
    keys.write_private_key(key_path, key, installation.passphrase())
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    cert_path.chmod(0o644)
    serial = format_serial(cert.serial_number)
    installation.audit.record(installation.event(
        "web.certificate", outcome="ok", serial=serial,
        details={"names": list(names), "not_after": cert.not_valid_after_utc.isoformat()}))
    return WebCertificate(cert_path, key_path, serial, cert.not_valid_after_utc,
                          issued_now=True)


def server_context(installation: Installation, certificate: WebCertificate) -> ssl.SSLContext:
    """TLS 1.2+, our server certificate, and client certificates requested (not required)
    and checked against our root; which identity a certificate names is decided later."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate.cert_path, certificate.key_path,
                            password=installation.passphrase())
    context.load_verify_locations(cadata=installation.root_certificate.public_bytes(
        Encoding.PEM).decode("ascii"))
    context.verify_mode = ssl.CERT_OPTIONAL
    return context
