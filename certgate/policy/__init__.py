"""Per-VM console permission policies: model, YAML loader with source locations, evaluator.

Everything here is pure; see docs/policy.md for the file format and the semantics.

Names are imported from their modules when first used (PEP 562): ``certgate.limits`` reads
durations with ``certgate.policy.values``, and ``certgate --version`` must not load the YAML
parser and the evaluator for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from certgate.lazy_exports import LazyExports

if TYPE_CHECKING:
    from certgate.policy.dump import dump_policy
    from certgate.policy.errors import PolicyError
    from certgate.policy.evaluate import (
        Decision,
        RequestContext,
        Subject,
        VMInfo,
        console_write_mode,
        decide,
        reachable_vms,
        subject_tags,
    )
    from certgate.policy.loader import load_policy, normalize_policy_text, policy_fingerprint
    from certgate.policy.model import (
        ALL_PRIVILEGES,
        BREAK,
        CONSOLE_PRIVILEGES,
        FORCE,
        INTERACT,
        LOG,
        REVIEW,
        VIEW,
        Policy,
        Privilege,
        Rule,
        SourceLocation,
        TimeWindow,
    )

_MODULE_OF = {
    "dump_policy": "dump",
    "PolicyError": "errors",
    "Decision": "evaluate",
    "RequestContext": "evaluate",
    "Subject": "evaluate",
    "VMInfo": "evaluate",
    "console_write_mode": "evaluate",
    "decide": "evaluate",
    "reachable_vms": "evaluate",
    "subject_tags": "evaluate",
    "load_policy": "loader",
    "normalize_policy_text": "loader",
    "policy_fingerprint": "loader",
    "ALL_PRIVILEGES": "model",
    "BREAK": "model",
    "CONSOLE_PRIVILEGES": "model",
    "FORCE": "model",
    "INTERACT": "model",
    "LOG": "model",
    "REVIEW": "model",
    "VIEW": "model",
    "Policy": "model",
    "Privilege": "model",
    "Rule": "model",
    "SourceLocation": "model",
    "TimeWindow": "model",
}

__all__ = [
    "ALL_PRIVILEGES",
    "BREAK",
    "CONSOLE_PRIVILEGES",
    "FORCE",
    "INTERACT",
    "LOG",
    "REVIEW",
    "VIEW",
    "Decision",
    "Policy",
    "PolicyError",
    "Privilege",
    "RequestContext",
    "Rule",
    "SourceLocation",
    "Subject",
    "TimeWindow",
    "VMInfo",
    "console_write_mode",
    "decide",
    "dump_policy",
    "load_policy",
    "normalize_policy_text",
    "policy_fingerprint",
    "reachable_vms",
    "subject_tags",
]


_EXPORTS = LazyExports(__name__, _MODULE_OF, globals())


def __getattr__(name: str) -> Any:
    return _EXPORTS.load(name)


def __dir__() -> list[str]:
    return _EXPORTS.names()
