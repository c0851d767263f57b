"""Security-group names, shared with the policy loader (``when: from_group``).

Bounded so that every chain certgate makes fits iptables' 28-character limit (``CG-I-`` and a
23-character name).
"""

from __future__ import annotations

import re

GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,22}")


def parse_group_name(text: str) -> str:
    if not GROUP_NAME.fullmatch(text):
        raise ValueError(
            f"invalid security group name {text[:40]!r} (1-23 letters, digits, '.', '_', '-', "
            "starting with a letter or digit)"
        )
    return text
