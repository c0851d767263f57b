"""Running the review site: uvicorn over HTTPS with certgate's certificates.

uvicorn does not hand the client's TLS certificate to the application (ASGI has no standard
field for it), so a small subclass of its h11 protocol reads the verified peer certificate
when the connection is made and puts it into the connection's ASGI ``state``. A test drives
a real browser with a client certificate through it, so an uvicorn change that breaks this
fails loudly rather than silently dropping mutual TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from certgate.installation import Installation
from certgate.web.app import CLIENT_CERT_KEY, ReviewSite, create_app
from certgate.web.console_log_index import catch_up_console_logs
from certgate.web.search_index import SearchIndex
from certgate.web.tls import ensure_server_certificate, server_context

log = logging.getLogger(__name__)


class ClientCertificateH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self.app_state = {**self.app_state, CLIENT_CERT_KEY: der}


@dataclass(frozen=True)
class WebOptions:
    host: str
    port: int
    names: Sequence[str]


def search_index_path(installation: Installation) -> Any:
    return installation.home.root / "search" / "recordings.sqlite"


def build_site(installation: Installation) -> ReviewSite:
    index = SearchIndex(search_index_path(installation))
    actor = f"web:{installation.config.gateway_name}"
    return ReviewSite(installation, index, actor=actor)


async def serve_web(installation: Installation, options: WebOptions,
                    ready: Callable[[int], None] | None = None,
                    stop: asyncio.Event | None = None) -> None:
    certificate = ensure_server_certificate(installation, options.names)
    context = server_context(installation, certificate)
    site = build_site(installation)
    threading.Thread(target=_initial_catch_up, args=(site,), daemon=True,
                     name="search-catch-up").start()
    sock = socket.socket(socket.AF_INET6 if ":" in options.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((options.host, options.port))
    config = uvicorn.Config(
        create_app(site), http=ClientCertificateH11Protocol, lifespan="off",
        ssl_context_factory=lambda _config, _default: context,
        log_config=None, access_log=False,
        server_header=False, proxy_headers=False)
    server = uvicorn.Server(config)
    port = sock.getsockname()[1]

    async def watch_stop() -> None:
        if stop is not None:
            await stop.wait()
            server.should_exit = True

    watcher = asyncio.create_task(watch_stop())
    started = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not started.done():
        await asyncio.sleep(0.02)
    if server.started and ready is not None:
        ready(port)
    try:
        await started
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def _initial_catch_up(site: ReviewSite) -> None:
    try:
        if site.index.rebuilt_from is not None:
            log.info("search index: schema version %d found, rebuilding",
                     site.index.rebuilt_from)
        added = site.index.catch_up(site.database, site.installation.home.recordings_dir)
        log.info("search index: %d recordings added", added)
        logs = catch_up_console_logs(site.index, site.installation.home.console_logs_dir,
                                     listings=site.console_listings)
        log.info("search index: %d console log chunks added", logs.chunks_added)
    except Exception:
        log.exception("search index catch-up failed")
