"""ASN.1 types asn1crypto lacks, kept local to ``ca``.

AC Targeting (RFC 5755 4.3.2) and Clearance with RFC 5755 ClassList bit
numbers. They are used by loading extension/attribute bytes explicitly rather
than by patching asn1crypto's global OID tables, so ``ca`` behaves the same
whether or not pyhanko-certvalidator (which patches those tables) is imported.
"""

from asn1crypto import cms, core, x509


class TargetCert(core.Sequence):  # type: ignore[misc]
    """TargetCert: accepted when parsing, never emitted."""

    _fields = [  # noqa: RUF012 - asn1crypto declares specs as class attributes
        ("target_certificate", cms.IssuerSerial),
        ("target_name", x509.GeneralName, {"optional": True}),
        ("cert_digest_info", cms.ObjectDigestInfo, {"optional": True}),
    ]


class Target(core.Choice):  # type: ignore[misc]
    """Target ::= CHOICE { targetName [0], targetGroup [1], targetCert [2] }."""

    _alternatives = [  # noqa: RUF012
        ("target_name", x509.GeneralName, {"explicit": 0}),
        ("target_group", x509.GeneralName, {"explicit": 1}),
        ("target_cert", TargetCert, {"explicit": 2}),
    ]


class Targets(core.SequenceOf):  # type: ignore[misc]
    """Targets ::= SEQUENCE OF Target."""

    _child_spec = Target


class SequenceOfTargets(core.SequenceOf):  # type: ignore[misc]
    """The AC Targeting extension value (2.5.29.55) is SEQUENCE OF Targets."""

    _child_spec = Targets


class ClassList(core.BitString):  # type: ignore[misc]
    """ClassList with bits kept as numbers (asn1crypto's names follow X.501, not RFC 5755)."""


class Clearance(core.Sequence):  # type: ignore[misc]
    """RFC 5755 Clearance; classList DEFAULT {unclassified} (bit 1)."""

    _fields = [  # noqa: RUF012
        ("policy_id", core.ObjectIdentifier),
        ("class_list", ClassList, {"optional": True}),
        ("security_categories", cms.SetOfSecurityCategory, {"optional": True}),
    ]


class SetOfClearance(core.SetOf):  # type: ignore[misc]
    """Values of a clearance attribute."""

    _child_spec = Clearance
