"""Per-VM console permission policies: model, YAML loader with source locations, evaluator.

Everything here is pure; see docs/policy.md for the file format and the semantics.
"""

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
