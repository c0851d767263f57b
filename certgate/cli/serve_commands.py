"""``certgate serve`` and ``certgate demo``: running the gateway."""

from __future__ import annotations

import asyncio
import logging
import re
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
@click.option("--log-format", default="auto", show_default=True,
              type=click.Choice(["auto", "json", "human"]),
              help="JSON lines, or human lines; auto: human on a terminal, else JSON.")
@click.option("--metrics-listen", default=None, metavar="HOST:PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (off by default).")
@click.option("--keep-consoles/--no-keep-consoles", default=True, show_default=True,
              help="Hold and log kept consoles (give --no-keep-consoles to every replica but "
                   "one: a QEMU console serves one client).")
@pass_app
def serve(app: AppContext, listen: str | None, gateway_id: str | None, log_level: str,
          log_format: str, metrics_listen: str | None, keep_consoles: bool) -> None:
    """Run the SSH gateway until interrupted."""
    from certgate.gateway.server import ServeOptions, serve_forever
    from certgate.observability import configure_logging

    configure_logging(log_level, log_format)
    metrics_address = None
    if metrics_listen:
        metrics_host, _, metrics_port = metrics_listen.rpartition(":")
        if not metrics_host or not metrics_port.isdigit() or int(metrics_port) > 65535:
            fail(f"--metrics-listen wants HOST:PORT, not {metrics_listen!r}")
        metrics_address = (metrics_host.strip("[]"), int(metrics_port))
    inst = app.installation()
    inst.database.check_schema()
    host, port = inst.config.listen_host, inst.config.listen_port
    if listen:
        host, _, port_text = listen.rpartition(":")
        if not host or not re.fullmatch(r"[0-9]{1,5}", port_text) or int(port_text) > 65535:
            fail(f"--listen wants HOST:PORT, not {listen!r}")
        port = int(port_text)
    options = ServeOptions(host=host, port=port,
                           gateway_id=gateway_id or socket.gethostname(),
                           limits=inst.config.limits.login,
                           keep_consoles=keep_consoles)

    def ready(ports: list[int]) -> None:
        click.echo(f"certgate gateway {options.gateway_id} listening on {host}:"
                   f"{','.join(map(str, ports))}", err=True)

    asyncio.run(serve_forever(inst, options, ready, metrics_listen=metrics_address))


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
