"""``certgate web``: run the audit review site; ``certgate web index``: build its search."""

from __future__ import annotations

import asyncio
import logging
import os

import click

from certgate.cli.main import AppContext, CommandGroup, fail, pass_app

DEFAULT_LISTEN = "127.0.0.1:8443"


def add_commands(cli: click.Group) -> None:
    cli.add_command(web_group)


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit() or int(port_text) > 65535:
        fail(f"--listen wants HOST:PORT, not {listen!r}")
    return host.strip("[]"), int(port_text)


@click.group("web", cls=CommandGroup, invoke_without_command=True)
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Where to serve HTTPS (port 0: any free port).")
@click.option("--name", "names", multiple=True, metavar="NAME",
              help="Host name or address for the server certificate (repeatable; default: "
                   "the gateway name, the listen address, localhost, 127.0.0.1).")
@click.option("--log-level", default="info",
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
def web_group(ctx: click.Context, listen: str, names: tuple[str, ...], log_level: str) -> None:
    """Serve the read-only audit review site over HTTPS until interrupted."""
    if ctx.invoked_subcommand is not None:
        return
    from certgate.web.server import WebOptions, serve_web
    from certgate.web.tls import default_names

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app: AppContext = ctx.obj
    inst = app.installation()
    inst.database.check_schema()
    host, port = _split_listen(listen)
    options = WebOptions(host, port, list(names) or default_names(inst, host))

    def ready(bound: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"certgate review site listening on https://{shown}:{bound}", err=True)

    asyncio.run(serve_web(inst, options, ready))


@web_group.command("index")
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="processes reading recordings while this one writes the index; 0 reads "
                   "them here (default: one less than the CPUs, at most 8)")
@pass_app
def web_index(app: AppContext, workers: int | None) -> None:
    """Add ended sessions' recordings and new console log output to the search index now."""
    from certgate.web.console_log_index import catch_up_console_logs
    from certgate.web.server import build_site

    site = build_site(app.installation())
    if site.index.rebuilt_from is not None:
        click.echo(f"search index schema version {site.index.rebuilt_from} found: rebuilding")
    if workers is None:
        workers = max(0, min(8, (os.cpu_count() or 1) - 1))
    added = site.index.catch_up(site.database, site.installation.home.recordings_dir,
                                workers=workers)
    logs = catch_up_console_logs(site.index, site.installation.home.console_logs_dir)
    stats = site.index.stats()
    click.echo(f"indexed {added} new recordings and {logs.chunks_added} new console log "
               f"chunks; {stats.recordings} recordings, {stats.chunks} text chunks, "
               f"{stats.console_segments} console log segments, {stats.console_chunks} "
               f"text chunks in {site.index.path}")
