"""``certgate policy``: apply, show and check per-VM permission policies."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from certgate.access import AccessService, explain
from certgate.cli.main import AppContext, CommandGroup, emit_json, fail, pass_app
from certgate.cli.streams import read_input
from certgate.cli.values import parse_time_option
from certgate.display import printable
from certgate.errors import CertgateError
from certgate.policy import VIEW
from certgate.policy.model import sorted_privileges


def add_commands(cli: click.Group) -> None:
    cli.add_command(policy_group)


@click.group("policy", cls=CommandGroup)
def policy_group() -> None:
    """Per-VM permission policies (YAML; see docs/policy.md)."""


@policy_group.command("apply")
@click.argument("file")
@pass_app
def policy_apply(app: AppContext, file: str) -> None:
    """Validate a policy file and make it the policy in force (a new version)."""
    from certgate.fleet import apply_policy
    from certgate.policy.loader import decode_policy  # the YAML parser: only where it parses
    from certgate.policy.yamlnodes import MAX_POLICY_CHARS

    text = decode_policy(read_input(file, "policy", 4 * MAX_POLICY_CHARS), Path(file).name)
    applied = apply_policy(app.installation(), text, Path(file).name)
    if applied.unchanged:
        click.echo(f"policy unchanged (version {applied.version.version})")
    else:
        click.echo(f"applied policy version {applied.version.version} "
                   f"({len(applied.policy.rules)} rules)")


@policy_group.command("show")
@click.option("--version", "version", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def policy_show(app: AppContext, version: int | None, as_json: bool) -> None:
    """Print the policy in force (or an earlier version)."""
    from certgate.store import repositories as repo

    inst = app.installation()
    with inst.database.read() as session:
        if version is None:
            current = repo.current_policy(session)
        else:
            current = repo.policy_version(session, version)
            if current is None:
                fail(f"no policy version {version}")
    if current is None:
        fail("no policy applied yet: everything is denied (certgate policy apply FILE)")
    if as_json:
        emit_json({"version": current.version, "source_name": current.source_name,
                   "fingerprint": current.fingerprint,
                   "applied_at": current.applied_at.isoformat(),
                   "applied_by": current.applied_by, "source": current.source})
        return
    click.echo(printable(f"# version {current.version}, applied {current.applied_at.isoformat()}"
                         f" by {current.applied_by} from {current.source_name}"), err=True)
    # YAML admits bidi overrides and zero-width characters; they must not disguise a rule.
    click.echo(printable(current.source, keep_newlines=True),
               nl=not current.source.endswith("\n"))


@policy_group.command("check")
@click.argument("user")
@click.argument("vm")
@click.option("--from", "source", default=None, metavar="IP", help="Source address.")
@click.option("--at", "at_text", default=None, metavar="TIME",
              help="ISO 8601 time (default: now; naive means UTC).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def policy_check(app: AppContext, user: str, vm: str, source: str | None,
                 at_text: str | None, as_json: bool) -> None:
    """Explain what the gateway would decide for USER on VM; exit 0 only when allowed."""
    at = parse_time_option(at_text)
    if source is not None:
        source = _parse_source(source)
    # The driver alone opens the store: the same statements as the gateway's, without
    # importing SQLAlchemy (most of this command's time otherwise; docs/benchmarks.md).
    inst = app.installation(direct_store=True)
    grant = AccessService(inst).may(user, VIEW, vm, source, at)
    decision = grant.decision
    rejected = [str(r) for r in grant.approval.rejected]
    inst.audit.record(inst.event(
        "policy.check", outcome="allow" if decision.allowed else "deny", user=user, vm=vm,
        source=source, details={"at": at.isoformat(), "reasons": list(decision.reasons),
                                "matched_rules": list(decision.matched_rules),
                                "rejected_attribute_certificates": rejected}))
    if as_json:
        emit_json({"allowed": decision.allowed,
                   "privileges": sorted_privileges(decision.privileges),
                   "matched_rules": list(decision.matched_rules),
                   "reasons": list(decision.reasons),
                   "attributes": grant.attributes.as_dict(),
                   "attribute_certificates": list(grant.attribute_serials),
                   "rejected_attribute_certificates": rejected})
    else:
        click.echo(printable(f"{user} on {vm} from {source or '(any source)'} at "
                             f"{at.isoformat()}"))
        click.echo(printable(f"attributes: {grant.attributes.describe() or '(none)'}"))
        click.echo(printable(explain(grant), keep_newlines=True))
    if not decision.allowed:
        raise SystemExit(1)


def _parse_source(text: str) -> str:
    """An IP address, as the gateway would see it; anything else is an error, because a
    rule with source conditions must never be judged against a value that is no address."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise CertgateError(f"--from wants an IP address, not {text!r}") from None
