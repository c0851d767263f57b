import pytest

from ca.attributes import AttributeSet, ClearanceLevel, parse_attribute_assignments
from ca.errors import MalformedInputError


def test_assignments_parse_into_an_attribute_set() -> None:
    attrs = parse_attribute_assignments(
        ["role=admin", "role=auditor", "group=ops", "clearance=top-secret", "grant=console.break"]
    )
    assert attrs == AttributeSet(
        roles=("admin", "auditor"),
        groups=("ops",),
        clearance=ClearanceLevel.TOP_SECRET,
        grants=("console.break",),
    )
    assert attrs.describe() == (
        "role=admin role=auditor group=ops clearance=top-secret grant=console.break"
    )
    assert attrs.as_dict() == {
        "roles": ["admin", "auditor"],
        "groups": ["ops"],
        "clearance": "top-secret",
        "grants": ["console.break"],
    }


def test_clearance_levels_are_rfc5755_classlist_bits() -> None:
    assert [level.value for level in ClearanceLevel] == [0, 1, 2, 3, 4]
    assert ClearanceLevel.from_name("TOP_SECRET") is ClearanceLevel.TOP_SECRET
    assert ClearanceLevel.SECRET.cli_name == "secret"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["role"], "expected KIND=VALUE"),
        (["colour=red"], "unknown kind"),
        (["clearance=secret", "clearance=unmarked"], "clearance given twice"),
        (["clearance=cosmic"], "unknown clearance"),
        (["role=a b"], "invalid role value"),
        (["group="], "expected KIND=VALUE"),
    ],
)
def test_bad_assignments_name_the_item(items: list[str], message: str) -> None:
    with pytest.raises(MalformedInputError, match=message):
        parse_attribute_assignments(items)


def test_empty_set_describes_itself() -> None:
    assert AttributeSet().describe() == "(no attributes)"
    assert AttributeSet().is_empty()
