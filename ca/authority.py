"""Identity-side X.509 certificates: root, Attribute Authority, hosts, users.

Built with cryptography's CertificateBuilder. Each builder fixes the profile of
one kind of certificate (constraints, key usage, EKU) so callers cannot produce
a certificate that would be accepted for the wrong purpose.
"""

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.errors import MalformedInputError
from ca.keys import PrivateKey, PublicKey, check_private_key, check_public_key
from ca.names import check_common_name, check_email, check_host_name, check_user_name
from ca.serials import new_serial
from ca.signing import signing_hash
from ca.timeutil import check_window

USER_URI_PREFIX = "urn:certgate:user:"

_NO_KEY_USAGE = dict(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _key_usage(**enabled: bool) -> x509.KeyUsage:
    return x509.KeyUsage(**{**_NO_KEY_USAGE, **enabled})


def _now_window(days: int) -> tuple[datetime, datetime]:
    if days < 1:
        raise MalformedInputError(f"validity must be at least one day (got {days})")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    return start, start + timedelta(days=days)


def _issued_builder(
    root_cert: x509.Certificate,
    public_key: PublicKey,
    subject: x509.Name,
    not_before: datetime,
    not_after: datetime,
    serial: int | None,
) -> x509.CertificateBuilder:
    """Fields and extensions shared by every certificate the root issues."""
    check_public_key(public_key)
    start, end = check_window(not_before, not_after)
    root_ski = root_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root_cert.subject)
        .public_key(public_key)
        .serial_number(new_serial() if serial is None else serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
    )


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    check_private_key(key)
    return builder.sign(key, signing_hash(key))


def _cn(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, check_common_name(common_name))]
    if organization is not None:
        attributes.append(
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, check_common_name(organization))
        )
    return x509.Name(attributes)


def _root_organization(root_cert: x509.Certificate) -> str | None:
    values = root_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else None


def build_root_certificate(
    key: PrivateKey, common_name: str, *, days: int = 3650, organization: str | None = None
) -> x509.Certificate:
    """Self-signed root: CA with pathlen 0 (it only issues end-entity certificates)."""
    check_private_key(key)
    public_key = key.public_key()
    start, end = _now_window(days)
    subject = _cn(common_name, organization)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(new_serial())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    return _sign(builder, key)


def build_attribute_authority_certificate(
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    aa_public_key: PublicKey,
    common_name: str,
    *,
    days: int = 1825,
) -> x509.Certificate:
    """Attribute Authority: a non-CA that signs ACs and the attribute CRL.

    It must not be a CA: RFC 5755 validators (pyhanko-certvalidator) refuse ACs
    signed by CA certificates.
    """
    start, end = _now_window(days)
    subject = _cn(common_name, _root_organization(root_cert))
    builder = _issued_builder(root_cert, aa_public_key, subject, start, end, None).add_extension(
        _key_usage(digital_signature=True, crl_sign=True), critical=True
    )
    return _sign(builder, root_key)


def build_host_certificate(
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    host_public_key: PublicKey,
    host_name: str,
    *,
    days: int = 825,
) -> x509.Certificate:
    """TLS/SSH server certificate for a gateway host: serverAuth, SAN dNSName."""
    check_host_name(host_name)
    start, end = _now_window(days)
    builder = (
        _issued_builder(root_cert, host_public_key, _cn(host_name), start, end, None)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host_name)]), critical=False)
    )
    return _sign(builder, root_key)



def build_tls_server_certificate(
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    public_key: PublicKey,
    names: Sequence[str],
    *,
    days: int = 397,
) -> x509.Certificate:
    """An HTTPS server certificate (serverAuth) for DNS names and IP addresses.

    Browsers refuse Ed25519 server keys, so the caller brings an ECDSA or RSA key; 397 days
    is the longest lifetime browsers accept for a server certificate.
    """
    if not names:
        raise MalformedInputError("a TLS server certificate needs at least one name")
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(check_host_name(name)))
    start, end = _now_window(days)
    builder = (
        _issued_builder(root_cert, public_key, _cn(names[0]), start, end, None)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    )
    return _sign(builder, root_key)


def build_signing_certificate(
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    public_key: PublicKey,
    common_name: str,
    *,
    days: int = 825,
) -> x509.Certificate:
    """Certificate for a key that signs records (e.g. the gateway's audit checkpoints)."""
    start, end = _now_window(days)
    subject = _cn(common_name, _root_organization(root_cert))
    builder = _issued_builder(root_cert, public_key, subject, start, end, None).add_extension(
        _key_usage(digital_signature=True, content_commitment=True), critical=True
    )
    return _sign(builder, root_key)


def build_identity_certificate(
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    public_key: PublicKey,
    *,
    user_name: str,
    email: str | None,
    not_before: datetime,
    not_after: datetime,
    serial: int | None = None,
) -> x509.Certificate:
    """A user's identity certificate: who the key belongs to, usable only for clientAuth."""
    check_user_name(user_name)
    names: list[x509.GeneralName] = []
    if email is not None:
        names.append(x509.RFC822Name(check_email(email)))
    names.append(x509.UniformResourceIdentifier(USER_URI_PREFIX + user_name))
    subject = _cn(user_name, _root_organization(root_cert))
    builder = (
        _issued_builder(root_cert, public_key, subject, not_before, not_after, serial)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
    )
    return _sign(builder, root_key)


def identity_user_name(cert: x509.Certificate) -> str | None:
    """The user name from the ``urn:certgate:user:`` SAN URI, if present."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(USER_URI_PREFIX):
            return uri[len(USER_URI_PREFIX) :]
    return None
