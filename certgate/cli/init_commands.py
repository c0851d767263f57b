"""``certgate init``: create an installation."""

from __future__ import annotations

import click

from ca import keys
from certgate.cli.main import AppContext, pass_app
from certgate.errors import CertgateError
from certgate.home import read_passphrase
from certgate.installation import cli_actor


def add_commands(cli: click.Group) -> None:
    cli.add_command(init)


@click.command()
@click.option("--gateway-name", default="certgate-gateway", show_default=True,
              help="Name the gateway is known by (host certificate, AC targeting).")
@click.option("--organisation", default="certgate", show_default=True)
@click.option("--database-url", default=None,
              help="SQLAlchemy URL (default: SQLite in the home). PostgreSQL: "
                   "postgresql+psycopg://user@host/db")
@click.option("--listen", default="127.0.0.1:2222", show_default=True, metavar="HOST:PORT")
@click.option("--key-type", type=click.Choice(keys.KEY_ALGORITHMS), default="ed25519",
              show_default=True, help="Algorithm of the root and AA keys.")
@click.option("--crl-url", default=None, help="URL published in ACs' CRL distribution points.")
@click.option("--no-passphrase", is_flag=True,
              help="Store private keys unencrypted (only for throwaway installations).")
@pass_app
def init(app: AppContext, gateway_name: str, organisation: str, database_url: str | None,
         listen: str, key_type: keys.KeyAlgorithm, crl_url: str | None,
         no_passphrase: bool) -> None:
    """Create a new installation: config, database, root CA, AA and gateway keys."""
    from certgate.provisioning import InitOptions, create_installation  # only init needs it

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise CertgateError(f"--listen wants HOST:PORT, not {listen!r}")
    passphrase = None if no_passphrase else read_passphrase(confirm=True)
    result = create_installation(
        app.home,
        InitOptions(gateway_name=gateway_name, organisation=organisation,
                    database_url=database_url, listen_host=host, listen_port=int(port),
                    key_algorithm=key_type, crl_url=crl_url),
        passphrase=passphrase,
        actor=cli_actor(),
    )
    click.echo(f"created certgate installation in {result.home.root}")
    click.echo(f"  root CA serial   {result.root_serial}")
    click.echo(f"  AA serial        {result.aa_serial}")
    click.echo(f"  gateway host     {result.host_serial}")
    click.echo(f"  audit signer     {result.audit_serial}")
