"""Sample audit events shared by the audit tests."""

from __future__ import annotations

from typing import Any

from certgate.audit.chain import AuditEvent


def sample_event(number: int, **overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "event_type": "console.attach",
        "actor": "gateway:gw.test",
        "outcome": "allow",
        "user": f"user{number % 3}",
        "vm": "vm1",
        "serial": "0a1b",
        "source": "192.0.2.7:50000",
        "session_id": f"s-{number}",
        "details": {"n": number, "text": "grüße"},
    }
    return AuditEvent(**{**fields, **overrides})
