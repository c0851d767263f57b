"""``certgate serve`` and ``certgate demo``: running the gateway."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import click

from certgate.cli.main import AppContext, fail, pass_app


def add_commands(cli: click.Group) -> None:
    cli.add_command(serve)
    cli.add_command(demo)


@click.command()
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Override the configured listen address.")
@click.option("--gateway-id", default=None,
              help="Name of this replica in session records (default: host name).")
@click.option("--log-level", default="info",
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--keep-consoles/--no-keep-consoles", default=True, show_default=True,
              help="Hold and log kept consoles (give --no-keep-consoles to every replica but "
                   "one: a QEMU console serves one client).")
@pass_app
def serve(app: AppContext, listen: str | None, gateway_id: str | None, log_level: str,
          keep_consoles: bool) -> None:
    """Run the SSH gateway until interrupted."""
    from certgate.gateway.server import ServeOptions, serve_forever

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("asyncssh", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    inst = app.installation()
    inst.database.check_schema()
    host, port = inst.config.listen_host, inst.config.listen_port
    if listen:
        host, _, port_text = listen.rpartition(":")
        if not host or not port_text.isdigit():
            fail(f"--listen wants HOST:PORT, not {listen!r}")
        port = int(port_text)
    options = ServeOptions(host=host, port=port,
                           gateway_id=gateway_id or socket.gethostname(),
                           keep_consoles=keep_consoles)

    def ready(ports: list[int]) -> None:
        click.echo(f"certgate gateway {options.gateway_id} listening on {host}:"
                   f"{','.join(map(str, ports))}", err=True)

    asyncio.run(serve_forever(inst, options, ready))


@click.command()
@click.option("--home", "demo_home", default="demo-home", show_default=True, metavar="DIR",
              help="Where to create the throwaway demo installation (replaced if it is one).")
@click.option("--port", default=2222, show_default=True, help="Preferred port on 127.0.0.1.")
@click.option("--simulated", is_flag=True, help="Skip QEMU; use the simulated console.")
def demo(demo_home: str, port: int, simulated: bool) -> None:
    """Create a demo installation with a VM and run the gateway on loopback."""
    from certgate.demo.run import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_demo(Path(demo_home).absolute(), port=port, want_qemu=not simulated,
             say=lambda line: click.echo(line, err=False))
