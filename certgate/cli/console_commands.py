"""``certgate console log``: print, search or follow a VM's console log (audited)."""

from __future__ import annotations

import click

from certgate.audit import query as q
from certgate.cli.main import AppContext, CommandGroup, emit_json, pass_app
from certgate.consolelog.reader import ConsoleLogReader, compile_pattern, log_directory
from certgate.errors import CertgateError
from certgate.store import repositories as repo


def add_commands(cli: click.Group) -> None:
    cli.add_command(console_group)


@click.group("console", cls=CommandGroup)
def console_group() -> None:
    """The consoles the gateway keeps, and their logs."""


@console_group.command("log")
@click.argument("vm")
@click.option("--since", default=None, metavar="TIME", help="ISO 8601, or an age like 2h.")
@click.option("--until", default=None, metavar="TIME", help="Same forms as --since.")
@click.option("--grep", "pattern", default=None, metavar="REGEX",
              help="Only lines matching this regular expression.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--raw", is_flag=True,
              help="Write the output as the console sent it, every escape sequence included "
                   "(colours, cursor moves, but also title, clipboard and query sequences): "
                   "for replaying into a terminal you trust with it.")
@pass_app
def console_log(app: AppContext, vm: str, since: str | None, until: str | None,
                pattern: str | None, follow: bool, as_json: bool, raw: bool) -> None:
    """Print what VM's console printed, with times; escape sequences are removed
    unless --raw is given."""
    if raw and (pattern is not None or follow or as_json):
        raise CertgateError("--raw replays the output as it was: it takes no --grep, "
                            "--follow or --json")
    inst = app.installation()
    directory = log_directory(inst.home.console_logs_dir, vm)
    grep = compile_pattern(pattern)
    reader = ConsoleLogReader(
        directory,
        since=q.parse_time(since, option="--since") if since else None,
        until=q.parse_time(until, option="--until") if until else None,
        grep=grep,
    )
    with inst.database.read() as session:
        known = repo.find_vm(session, vm) is not None
    if not known and not directory.is_dir():
        raise CertgateError(f"no VM named {vm} and no console log for it")
    # Recorded before anything is shown: reading history is itself an audited act.
    inst.audit.record(inst.event("console.log.read", outcome="ok", vm=vm, details={
        "since": since, "until": until, "grep": pattern, "follow": follow, "raw": raw,
        "via": "cli"}))
    if raw:
        out = click.get_binary_stream("stdout")
        for text in reader.output():
            out.write(text.encode("utf-8", "surrogateescape"))
        out.flush()
        return
    if as_json:
        emit_json([{"at": line.at.isoformat(), "text": line.text, "note": line.note}
                   for line in reader.lines()])
        return
    try:
        lines = reader.follow(lambda: False) if follow else reader.lines()
        for line in lines:
            click.echo(line.render())
    except KeyboardInterrupt:
        return
