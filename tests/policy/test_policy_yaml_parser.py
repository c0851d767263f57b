"""libyaml (fast) and PyYAML's pure parser compose policy documents into the same tree."""

from __future__ import annotations

import pytest
import yaml

from certgate.policy import PolicyError, load_policy
from certgate.policy.yamlnodes import compose_document

DOCUMENTS = [
    "version: 1\nrules: []\n",
    "# comment\nversion: '1'\nrules:\n  - {name: a, effect: allow, vms: {names: ['w*']},"
    " privileges: [console.view]}\n",
    "version: 1\nrules:\n  - name: \"caf\\u00e9 \\t x\"\n    effect: allow\n    vms:\n"
    "      labels: {env: &p prod, tier: prod}\n    privileges:\n      - console.view\n",
    "version: 1\ndescription: |\n  line one\n  line two\nrules:\n  - name: b\n    effect: deny\n"
    "    vms: {names: [\"*\"]}\n    description: >-\n      folded\n      text\n",
    "\ufeffversion: 1\r\nrules: []\r\n",
]


def _tree(node: yaml.Node | None) -> object:
    if node is None:
        return None
    mark = (node.start_mark.line, node.start_mark.column)
    if isinstance(node, yaml.ScalarNode):
        return (node.tag, node.value, node.style or None, mark)
    if isinstance(node, yaml.SequenceNode):
        return (node.tag, mark, [_tree(n) for n in node.value])
    return (node.tag, mark, [(_tree(k), _tree(v)) for k, v in node.value])


@pytest.mark.skipif(not hasattr(yaml, "CSafeLoader"), reason="PyYAML built without libyaml")
@pytest.mark.parametrize("text", DOCUMENTS)
def test_both_parsers_compose_the_same_tree(text: str) -> None:
    fast = yaml.compose(text, Loader=yaml.CSafeLoader)
    pure = yaml.compose(text, Loader=yaml.SafeLoader)
    assert _tree(fast) == _tree(pure)
    assert _tree(compose_document(text, "p.yaml")) == _tree(pure)


def test_syntax_errors_keep_the_pure_parsers_message() -> None:
    with pytest.raises(PolicyError) as raised:
        load_policy("version: 1\nrules: [\n", "p.yaml")
    assert "invalid YAML" in str(raised.value)
    assert "p.yaml:3" in str(raised.value)


def test_an_alias_is_refused_whichever_parser_composed_it() -> None:
    """Aliases are refused (their expansion is exponential; issue 9): the fast parser's tree
    is checked for shared nodes, and the bounded loader names the place."""
    text = ("version: 1\nrules:\n  - name: a\n    effect: allow\n"
            "    vms: {labels: {env: &p prod, tier: *p}}\n    privileges: [console.view]\n")
    with pytest.raises(PolicyError, match=r"p.yaml:5:\d+: YAML aliases"):
        compose_document(text, "p.yaml")
