"""Audit review commands: verify, checkpoint, list, show, export, sessions, replay, prune."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path
from typing import IO, Any

import click
from cryptography import x509

from certgate.audit import query as q
from certgate.audit.chain import OUTCOMES
from certgate.audit.checkpoints import CheckpointVerifier, load_signer, write_checkpoint
from certgate.audit.replay import SKIP_IDLE_SECONDS, plan, play, read_cast
from certgate.audit.replay_filter import TerminalStreamFilter
from certgate.audit.retention import prune_before
from certgate.audit.sessions import find_session, list_sessions
from certgate.audit.verification import verify_chain
from certgate.cli.main import AppContext, CommandGroup, emit_json, fail, pass_app
from certgate.consolelog.anchoring import verify_console_logs
from certgate.display import json_for_terminal, printable
from certgate.errors import AuditError, CertgateError
from certgate.installation import Installation
from certgate.store import repositories as repo

PROGRESS_THRESHOLD = 10_000
PAGER_THRESHOLD = 40


def add_commands(cli: click.Group) -> None:
    cli.add_command(audit_group)


@click.group("audit", cls=CommandGroup)
def audit_group() -> None:
    """Review the audit log and session recordings; verify the chain."""


def _verifier(inst: Installation) -> CheckpointVerifier:
    try:
        audit_cert = x509.load_pem_x509_certificate(inst.home.audit_cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the audit certificate {inst.home.audit_cert}: "
                         f"{exc}") from exc
    return CheckpointVerifier(audit_cert, inst.root_certificate)


def _show_progress(total: int) -> bool:
    return total >= PROGRESS_THRESHOLD and sys.stderr.isatty()


def _output(lines: list[str]) -> None:
    """Lines to stdout, through a pager when a person reads a long listing on a terminal."""
    lines = [printable(line) for line in lines]  # user names, VMs, reasons come from outside
    if len(lines) > PAGER_THRESHOLD and sys.stdout.isatty():
        click.echo_via_pager("\n".join(lines) + "\n")
    else:
        for line in lines:
            click.echo(line)


def _filters(user: str | None, vm: str | None, since: str | None, until: str | None,
             outcome: str | None, event_type: str | None) -> q.EventFilter:
    return q.EventFilter(
        user=user, vm=vm,
        since=q.parse_time(since, option="--since") if since else None,
        until=q.parse_time(until, option="--until") if until else None,
        outcome=outcome, event_type=event_type,
    )


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--user", default=None, help="Only entries about this user."),
        click.option("--vm", default=None, help="Only entries about this VM."),
        click.option("--since", default=None, metavar="TIME",
                     help="ISO 8601, or an age like 2h, 7d (ago)."),
        click.option("--until", default=None, metavar="TIME", help="Same forms as --since."),
        click.option("--outcome", type=click.Choice(OUTCOMES), default=None),
        click.option("--type", "event_type", default=None, metavar="TYPE",
                     help="Event type, e.g. session.start; a trailing * matches a prefix."),
    ]):
        command = option(command)
    return command


# -- verify, checkpoint -----------------------------------------------------------------------


@audit_group.command("verify")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def verify(app: AppContext, as_json: bool) -> None:
    """Check every link, the head row and every checkpoint; exit 0 only when intact."""
    inst = app.installation()
    verifier = _verifier(inst)
    with inst.database.read() as session:
        total = repo.audit_entry_count(session)
    bar: AbstractContextManager[Any] = (
        click.progressbar(length=total, label="verifying", file=sys.stderr)
        if _show_progress(total) else nullcontext(None))
    with bar as progress:
        report = verify_chain(inst.database, verifier,
                              progress=progress.update if progress is not None else None)
    logs = verify_console_logs(inst.database, inst.home.console_logs_dir)
    problem = report.problem or (logs.problems[0] if logs.problems else None)
    intact = report.intact and logs.intact
    inst.audit.record(inst.event(
        "audit.verify", outcome="ok" if intact else "error",
        details={"entries": report.entries_checked, "checkpoints": report.checkpoints_checked,
                 "console_log_segments": logs.segments_checked, "problem": problem}))
    if as_json:
        emit_json({"intact": intact, "entries_checked": report.entries_checked,
                   "checkpoints": report.checkpoints_checked, "base_seq": report.base_seq,
                   "head_seq": report.head_seq, "problem": problem,
                   "failed_seq": report.failed_seq,
                   "console_log_segments": logs.segments_checked,
                   "console_log_problems": list(logs.problems)})
        if not intact:
            sys.exit(1)
        return
    if not report.intact:
        fail(report.summary())
    if not logs.intact:
        fail("; ".join(logs.problems))
    click.echo(report.summary())
    if logs.segments_checked:
        click.echo(logs.summary())


@audit_group.command("checkpoint")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def checkpoint(app: AppContext, as_json: bool) -> None:
    """Sign the current chain head with the gateway's audit key."""
    inst = app.installation()
    made = write_checkpoint(inst)
    if as_json:
        emit_json({"id": made.id, "seq": made.seq, "entry_hash": made.entry_hash,
                   "created_at": made.created_at.isoformat(), "signer": made.signer_serial})
        return
    click.echo(f"checkpoint {made.id} signed entry {made.seq} ({made.entry_hash})")


# -- list, show, export -----------------------------------------------------------------------


def _row_line(entry: dict[str, Any]) -> str:
    session = (entry["session"] or "-")[:8]
    return (f"{entry['seq']:>7}  {entry['ts'][:19]}  {entry['type']:<22} "
            f"{entry['outcome'] or '-':<6} {entry['user'] or '-':<12} {entry['vm'] or '-':<12} "
            f"{session:<8}  {entry['actor']}")


@audit_group.command("list")
@filter_options
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1),
              help="Show the newest N matching entries.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def list_events(app: AppContext, user: str | None, vm: str | None, since: str | None,
                until: str | None, outcome: str | None, event_type: str | None, limit: int,
                as_json: bool) -> None:
    """List audit entries, oldest first, newest N only."""
    filters = _filters(user, vm, since, until, outcome, event_type)
    entries = [q.entry_dict(e) for e in
               q.latest_events(app.installation().database, filters, limit)]
    if as_json:
        emit_json(entries)
        return
    header = (f"{'SEQ':>7}  {'TIME (UTC)':<19}  {'TYPE':<22} {'RESULT':<6} {'USER':<12} "
              f"{'VM':<12} {'SESSION':<8}  ACTOR")
    _output([header, *(_row_line(e) for e in entries)])


MAX_SEQ = 2**63 - 1  # the BIGINT the chain's seq is stored in


def _parse_seq(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,40}", text.strip()):
        raise CertgateError(f"audit entry id must be a number (its seq), not {text!r}")
    value = int(text.strip())
    if not 1 <= value <= MAX_SEQ:
        raise CertgateError(f"audit entry id must be between 1 and {MAX_SEQ}, not {value}")
    return value


@audit_group.command("show")
@click.argument("entry_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show(app: AppContext, entry_id: str, as_json: bool) -> None:
    """Show one audit entry with all its fields."""
    entry = q.get_event(app.installation().database, _parse_seq(entry_id))
    data = q.entry_dict(entry)
    data["hash_matches_content"] = hashlib.sha256(entry.encoding()).hexdigest() == \
        entry.entry_hash
    if as_json:
        emit_json(data)
        return
    for key in ("seq", "ts", "type", "actor", "outcome", "user", "vm", "serial", "source",
                "session", "prev_hash", "entry_hash"):
        click.echo(f"{key:<11} {printable(data[key]) if data[key] is not None else '-'}")
    verdict = "matches content" if data["hash_matches_content"] else "DOES NOT MATCH CONTENT"
    click.echo(f"{'hash':<11} {verdict}")
    click.echo("details")
    for line in json.dumps(data["details"], indent=2, sort_keys=True,
                           ensure_ascii=False).splitlines():
        click.echo(f"  {json_for_terminal(line)}")


_CSV_FIELDS = ("seq", "ts", "type", "actor", "outcome", "user", "vm", "serial", "source",
               "session", "details", "prev_hash", "entry_hash")


@audit_group.command("export")
@filter_options
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("--out", default=None, metavar="FILE", help="Write here instead of stdout.")
@pass_app
def export(app: AppContext, user: str | None, vm: str | None, since: str | None,
           until: str | None, outcome: str | None, event_type: str | None, fmt: str,
           out: str | None) -> None:
    """Export matching entries in seq order (hashes included, so a copy can be re-checked)."""
    inst = app.installation()
    filters = _filters(user, vm, since, until, outcome, event_type)
    total = q.count_events(inst.database, filters) if sys.stderr.isatty() else 0
    written = 0
    with ExitStack() as stack:
        handle: IO[str] = (
            stack.enter_context(Path(out).open("w", encoding="utf-8", newline=""))
            if out and out != "-" else sys.stdout)
        stream: Iterator[Any] = q.stream_events(inst.database, filters)
        bar: AbstractContextManager[Any] = (
            click.progressbar(stream, length=total, label="exporting", file=sys.stderr)
            if _show_progress(total) else nullcontext(stream))
        with bar as entries:
            writer = csv.DictWriter(handle, _CSV_FIELDS) if fmt == "csv" else None
            if writer:
                writer.writeheader()
            to_terminal = handle.isatty()
            for entry in entries:
                data = q.entry_dict(entry)
                if writer:
                    row = {**data, "details": entry.details_json}
                    if to_terminal:
                        row = {k: v if v is None else printable(v) for k, v in row.items()}
                    writer.writerow(row)
                else:
                    handle.write(json_for_terminal(
                        json.dumps(data, ensure_ascii=False, sort_keys=True)) + "\n")
                written += 1
    inst.audit.record(inst.event("audit.export", outcome="ok", details={
        "format": fmt, "entries": written, "out": out,
        "filters": {k: v for k, v in {"user": user, "vm": vm, "since": since, "until": until,
                                      "outcome": outcome, "type": event_type}.items() if v}}))
    if out and out != "-":
        click.echo(f"exported {written} entries to {out}", err=True)


# -- sessions, replay -------------------------------------------------------------------------


@audit_group.command("sessions")
@click.option("--live", is_flag=True, help="Only sessions attached now.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
@pass_app
def sessions(app: AppContext, live: bool, limit: int, as_json: bool) -> None:
    """Console sessions, newest first; for live ones who is attached, from where, since when."""
    found = list_sessions(app.installation().database, live_only=live, limit=limit)
    if as_json:
        emit_json([s.as_dict() for s in found])
        return
    if not found:
        click.echo("no live sessions" if live else "no sessions")
        return
    lines = [f"{'SESSION':<36}  {'STATUS':<8} {'USER':<12} {'VM':<12} {'SOURCE':<22} "
             f"{'SINCE (UTC)':<19}  PRIVILEGES / END"]
    for s in found:
        tail = (", ".join(s.privileges) or "-") if s.status == "live" else (s.end_reason or "-")
        lines.append(f"{s.id:<36}  {s.status:<8} {s.user:<12} {s.vm:<12} "
                     f"{s.source or '-':<22} {s.started_at.isoformat()[:19]}  {tail}")
    _output(lines)


@audit_group.command("replay")
@click.argument("session_id", metavar="SESSION")
@click.option("--speed", default=1.0, show_default=True, type=float,
              help="Playback speed factor (2 = twice as fast).")
@click.option("--skip-idle", is_flag=True,
              help=f"Cut pauses to {SKIP_IDLE_SECONDS:g} s.")
@click.option("--max-idle", default=None, type=float, metavar="SECONDS",
              help="Cut pauses to at most this long.")
@click.option("--raw", is_flag=True,
              help="Write every escape sequence as recorded, including clipboard writes "
                   "(OSC 52), other OSC/DCS strings and terminal queries (filtered by "
                   "default).")
@pass_app
def replay(app: AppContext, session_id: str, speed: float, skip_idle: bool,
           max_idle: float | None, raw: bool) -> None:
    """Play a session's recording to stdout with its original timing.

    Sequences that act on the viewer's terminal rather than the picture (clipboard, titles,
    device queries) are removed unless --raw is given."""
    if speed <= 0:
        fail("--speed must be greater than 0")
    if max_idle is not None and max_idle < 0:
        fail("--max-idle must not be negative")
    inst = app.installation()
    found = find_session(inst.database, session_id)
    if not found.recording_path:
        raise CertgateError(f"session {found.id} has no recording")
    path = Path(found.recording_path)
    if not path.exists():
        raise CertgateError(f"the recording of session {found.id} is missing ({path})")
    if found.recording_sha256:
        digest = _file_sha256(path)
        if digest != found.recording_sha256:
            click.echo(f"certgate: warning: {path} does not match the SHA-256 recorded when "
                       "the session ended: the recording was altered", err=True)
    inst.audit.record(inst.event("audit.replay", outcome="ok", user=found.user, vm=found.vm,
                                 session_id=found.id))
    _header, events = read_cast(path)
    limit = max_idle if max_idle is not None else (SKIP_IDLE_SECONDS if skip_idle else None)

    out = click.get_binary_stream("stdout")
    stream_filter = None if raw else TerminalStreamFilter()

    def write(text: str) -> None:
        if stream_filter is not None:
            text = stream_filter.feed(text)
        out.write(text.encode("utf-8"))  # terminal bytes: no newline or encoding changes
        out.flush()

    play(plan(events, speed=speed, max_idle=limit), write)
    if stream_filter is not None:
        out.write(stream_filter.flush().encode("utf-8"))
        out.flush()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- prune ------------------------------------------------------------------------------------


@audit_group.command("prune")
@click.option("--before", required=True, metavar="TIME",
              help="Delete entries older than this (ISO 8601 or an age like 90d).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def prune(app: AppContext, before: str, as_json: bool) -> None:
    """Delete old entries; the rest stays verifiable (checkpoint, new base, audit.prune)."""
    cutoff = q.parse_time(before, option="--before")
    inst = app.installation()
    result = prune_before(inst.database, cutoff, signer=load_signer(inst),
                          verifier=_verifier(inst), actor=inst.actor)
    if as_json:
        emit_json({"removed": result.removed, "base_seq": result.base_seq,
                   "held_back_by_live_session": result.held_back_by_live_session,
                   "checkpoint": result.checkpoint_id})
        return
    click.echo(f"pruned {result.removed} entries; the chain now starts after entry "
               f"{result.base_seq}")
    if result.held_back_by_live_session:
        click.echo("some older entries were kept: they belong to a session that is still live",
                   err=True)
