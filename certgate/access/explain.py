"""Explanations that tell the truth: the decision's reasons and every AC that was set aside.

What a refused user sees, what ``policy check`` prints and what the audit event records come
from here, so they never disagree.
"""

from __future__ import annotations

from certgate.access.model import Grant


def explanation_lines(grant: Grant) -> list[str]:
    """The decision, one reason a line, then each attribute certificate not counted."""
    lines = grant.decision.explain().splitlines()
    lines += [f"not counted: {rejection}" for rejection in grant.approval.rejected]
    return lines


def explain(grant: Grant) -> str:
    return "\n".join(explanation_lines(grant))
