"""AttributeSet <-> RFC 5755 attributes (asn1crypto).

Encoding choices (see docs/ca.md): roles are RoleSyntax with a URI roleName
``urn:certgate:role:NAME``; groups and certgate grants are IetfAttrSyntax with
UTF8String values; clearance is emitted under 2.5.4.55 with certgate's policy
OID and accepted under 2.5.1.5.55 (RFC 3281, BouncyCastle) as well.
"""

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509

from ca.asn1_specs import ClassList, Clearance, SetOfClearance
from ca.attributes import (
    OID_CLEARANCE,
    OID_CLEARANCE_POLICY,
    OID_CLEARANCE_RFC3281,
    OID_GRANTS,
    OID_GROUP,
    OID_ROLE,
    ROLE_URI_PREFIX,
    AttributeSet,
    ClearanceLevel,
)
from ca.der import sequence
from ca.errors import MalformedInputError


def _ietf_values(values: tuple[str, ...]) -> cms.SetOfIetfAttrSyntax:
    return cms.SetOfIetfAttrSyntax(
        [
            cms.IetfAttrSyntax(
                {"values": [cms.IetfAttrValue(name="string", value=v) for v in values]}
            )
        ]
    )


def _attribute(oid: str, values: core.Asn1Value) -> bytes:
    """One Attribute ::= SEQUENCE { type, SET OF value } as DER."""
    return sequence(core.ObjectIdentifier(oid).dump(), values.dump())


def encode_attributes(attributes: AttributeSet) -> bytes:
    """DER of the ``attributes`` SEQUENCE OF Attribute for an AC."""
    parts: list[bytes] = []
    if attributes.roles:
        roles = cms.SetOfRoleSyntax(
            [
                cms.RoleSyntax(
                    {
                        "role_name": asn1_x509.GeneralName(
                            name="uniform_resource_identifier", value=ROLE_URI_PREFIX + role
                        )
                    }
                )
                for role in attributes.roles
            ]
        )
        parts.append(_attribute(OID_ROLE, roles))
    if attributes.groups:
        parts.append(_attribute(OID_GROUP, _ietf_values(attributes.groups)))
    if attributes.clearance is not None:
        clearance: dict[str, object] = {"policy_id": OID_CLEARANCE_POLICY}
        if attributes.clearance != ClearanceLevel.UNCLASSIFIED:
            level = int(attributes.clearance)
            clearance["class_list"] = ClassList(tuple([0] * level + [1]))
        parts.append(_attribute(OID_CLEARANCE, SetOfClearance([Clearance(clearance)])))
    if attributes.grants:
        parts.append(_attribute(OID_GRANTS, _ietf_values(attributes.grants)))
    return sequence(*parts)


def _general_name_text(name: asn1_x509.GeneralName) -> str:
    value: object = name.native
    if name.name == "directory_name":
        return str(name.chosen.human_friendly)
    if isinstance(value, str):
        return value
    return str(name.dump().hex())


def _role_name(name: asn1_x509.GeneralName) -> str:
    text = _general_name_text(name)
    if name.name == "uniform_resource_identifier" and text.startswith(ROLE_URI_PREFIX):
        return text[len(ROLE_URI_PREFIX) :]
    return text


def _ietf_value_text(value: cms.IetfAttrValue) -> str:
    if value.name == "string":
        return str(value.native)
    if value.name == "oid":
        return str(value.chosen.dotted)
    raw = bytes(value.native)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.hex()


def _clearance_level(clearance: Clearance) -> ClearanceLevel:
    bits = clearance["class_list"].native
    if bits is None:
        return ClearanceLevel.UNCLASSIFIED
    set_bits = [i for i, bit in enumerate(bits) if bit]
    if not set_bits:
        return ClearanceLevel.UNMARKED
    highest = max(set_bits)
    if highest > max(ClearanceLevel):
        raise MalformedInputError(f"clearance class list sets unknown bit {highest}")
    return ClearanceLevel(highest)


def decode_attributes(attributes: cms.AttCertAttributes) -> AttributeSet:
    """Read roles, groups, clearance and grants; other attribute types are ignored."""
    roles: list[str] = []
    groups: list[str] = []
    grants: list[str] = []
    clearances: list[ClearanceLevel] = []
    for attribute in attributes:
        oid = attribute["type"].dotted
        raw = attribute["values"].dump()
        if oid == OID_ROLE:
            for role in cms.SetOfRoleSyntax.load(raw):
                roles.append(_role_name(role["role_name"]))
        elif oid in (OID_GROUP, OID_GRANTS):
            target = groups if oid == OID_GROUP else grants
            for syntax in cms.SetOfIetfAttrSyntax.load(raw):
                target.extend(_ietf_value_text(v) for v in syntax["values"])
        elif oid in (OID_CLEARANCE, OID_CLEARANCE_RFC3281):
            for clearance in SetOfClearance.load(raw):
                if clearance["policy_id"].dotted == OID_CLEARANCE_POLICY:
                    clearances.append(_clearance_level(clearance))
    if len(clearances) > 1:
        raise MalformedInputError("attribute certificate carries more than one certgate clearance")
    return AttributeSet(
        roles=tuple(dict.fromkeys(roles)),
        groups=tuple(dict.fromkeys(groups)),
        clearance=clearances[0] if clearances else None,
        grants=tuple(dict.fromkeys(grants)),
    )
