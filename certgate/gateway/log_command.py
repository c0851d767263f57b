"""``ssh VM@gateway log [--since T] [--until T] [--grep RE]``: a console log over SSH.

Reading a console's history is its own privilege (``console.log``): someone allowed to
watch a console now has not necessarily been allowed to see what it printed last night.
Every read, allowed or refused, is audited before anything is sent.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncssh

from certgate.access import Grant
from certgate.audit import query as q
from certgate.audit.chain import AuditEvent
from certgate.consolelog.reader import ConsoleLogReader, compile_pattern, log_directory
from certgate.errors import CertgateError
from certgate.policy import LOG

MAX_COMMAND = 1024
MAX_LINES = 100_000


@dataclass(frozen=True)
class LogRequest:
    since: datetime | None = None
    until: datetime | None = None
    grep: str | None = None

    def details(self) -> dict[str, str | None]:
        return {"since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
                "grep": self.grep, "via": "ssh"}


def parse_log_command(command: str) -> LogRequest:
    """``log`` and its options, as typed after the SSH destination."""
    if len(command) > MAX_COMMAND:
        raise CertgateError(f"log: command longer than {MAX_COMMAND} characters")
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise CertgateError(f"log: {exc}") from None
    values: dict[str, str] = {}
    rest = words[1:]
    while rest:
        option = rest.pop(0)
        if option not in ("--since", "--until", "--grep") or not rest:
            raise CertgateError("usage: log [--since TIME] [--until TIME] [--grep REGEX]")
        values[option] = rest.pop(0)
    compile_pattern(values.get("--grep"))
    return LogRequest(
        since=q.parse_time(values["--since"], option="--since") if "--since" in values else None,
        until=q.parse_time(values["--until"], option="--until") if "--until" in values else None,
        grep=values.get("--grep"),
    )


async def serve_log(
    process: asyncssh.SSHServerProcess[bytes],
    grant: Grant,
    request: LogRequest,
    *,
    source: str | None,
    logs_dir: Path,
    audit: Callable[[AuditEvent], Awaitable[None]],
    actor: str,
) -> int:
    assert grant.vm is not None
    allowed = grant.allowed and LOG in grant.decision.privileges
    await audit(AuditEvent(
        "console.log.read", actor, outcome="allow" if allowed else "deny",
        user=grant.identity.user, vm=grant.vm.name, serial=grant.identity.serial,
        source=source, details={**request.details(),
                                "matched_rules": list(grant.decision.matched_rules)}))
    if not allowed:
        process.stdout.write(f"certgate: reading the console log of {grant.vm.name} needs "
                             f"the {LOG} privilege\r\n".encode())
        return 1
    reader = ConsoleLogReader(log_directory(logs_dir, grant.vm.name), since=request.since,
                              until=request.until, grep=compile_pattern(request.grep))

    def collect() -> list[str]:
        lines = []
        for count, line in enumerate(reader.lines()):
            if count >= MAX_LINES:
                lines.append(f"(stopped after {MAX_LINES} lines: narrow with --since/--grep)")
                break
            lines.append(line.render())
        return lines

    for line in await asyncio.to_thread(collect):
        process.stdout.write((line + "\r\n").encode())
        await process.stdout.drain()
    return 0
