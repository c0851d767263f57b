"""The gateway's consoles: one hub per VM, kept ones held from start-up, their logs written.

``ConsoleKeepers`` owns every ``ConsoleHub`` and every console log writer of one gateway.
It holds ``keep = always`` consoles for as long as their VM is registered (it re-reads the VM
table every few seconds: one query per gateway, not per console), ticks the log writers
once a second from a single task, and anchors each sealed or expired log segment in the
audit chain. On-demand consoles get their hub when a session first asks for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Awaitable, Callable
from typing import Any

from certgate.audit.chain import AuditEvent, ChainEntry
from certgate.consolelog.anchoring import anchored_segments, audit_event
from certgate.consolelog.reader import log_directory
from certgate.consolelog.settings import ConsoleLogSettings
from certgate.consolelog.writer import ConsoleLogWriter, LogRecord
from certgate.consoles.backends import UpstreamSshOptions, open_console
from certgate.consoles.errors import ConsoleError
from certgate.consoles.hub import ConsoleHub, Opener
from certgate.consoles.keeper import KeepMode, keep_mode
from certgate.consoles.mux import WriteMode
from certgate.consoles.uri import ConsoleTarget, SshConsole, parse_console_uri
from certgate.errors import CertgateError
from certgate.installation import Installation
from certgate.store import repositories as repo

log = logging.getLogger(__name__)

Auditor = Callable[[AuditEvent], Awaitable[ChainEntry]]
WriteModesOf = Callable[[list[repo.VM]], dict[str, str]]
"""Per VM, its console's write mode under the policy in force (a store read: run in a thread)."""


class ConsoleKeepers:
    """Every console hub and console log of one gateway process."""

    def __init__(
        self,
        installation: Installation,
        *,
        actor: str,
        audit: Auditor,
        settings: ConsoleLogSettings,
        ssh_options: UpstreamSshOptions | None,
        write_modes_of: WriteModesOf,
        keep: bool = True,
        opener_for: Callable[[str], Opener] | None = None,
        reconcile_interval: float = 5.0,
    ) -> None:
        self.installation = installation
        self.actor = actor
        self._audit = audit
        self.settings = settings
        self._ssh_options = ssh_options
        self._write_modes_of = write_modes_of
        self._reconcile_interval = reconcile_interval
        self.keep = keep
        self._opener_for = opener_for
        self.hubs: dict[str, ConsoleHub] = {}
        self.logs: dict[str, ConsoleLogWriter] = {}
        self._anchored: dict[str, dict[str, str]] = {}
        self._pending_records: list[LogRecord] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        _raise_file_limit()
        self._anchored = await asyncio.to_thread(self._read_anchored)
        await self.reconcile()
        self._tasks = [asyncio.create_task(self._ticker(), name="console logs"),
                       asyncio.create_task(self._reconciler(), name="console keepers")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        async with self._lock:
            for name in list(self.hubs):
                await self._drop(name, "console gateway shutting down")
            for name in list(self.logs):
                self._close_log(name)
        await self._anchor_records()

    async def hub_for(self, vm: repo.VM, *, write_mode: str | None = None) -> ConsoleHub:
        """The hub of ``vm``'s console, created on demand; its write mode refreshed
        (``write_mode`` when the caller knows it, else looked up in the current policy)."""
        if write_mode is None:
            modes = await asyncio.to_thread(self._write_modes_of, [vm])
            write_mode = modes.get(vm.name, "shared")
        async with self._lock:
            hub = await self._ensure(vm)
        hub.set_write_mode(WriteMode(write_mode))
        return hub

    async def reconcile(self) -> None:
        """Keep exactly the registered ``keep = always`` consoles; let go of removed VMs."""
        try:
            vms = await asyncio.to_thread(self._list_vms)
            modes = await asyncio.to_thread(self._write_modes_of, vms)
        except CertgateError as exc:
            log.error("cannot read the VM list: %s", exc)
            return
        by_name = {vm.name: vm for vm in vms}
        async with self._lock:
            for name, hub in list(self.hubs.items()):
                vm = by_name.get(name)
                if vm is None:
                    await self._drop(name, "the VM was removed from the gateway")
                    self._close_log(name)
                elif hub.target != parse_console_uri(vm.console_uri):
                    await self._drop(name, "the VM's console changed")
                elif hub.keeping and _mode(vm, self.keep) is not KeepMode.ALWAYS:
                    await self._drop(name, "the console is no longer kept")
            for vm in vms:
                if _mode(vm, self.keep) is KeepMode.ALWAYS:
                    try:
                        hub = await self._ensure(vm)
                        hub.set_write_mode(WriteMode(modes.get(vm.name, "shared")))
                        await hub.start_keeping()
                    except (ConsoleError, CertgateError, OSError) as exc:
                        log.error("cannot keep the console of %s: %s", vm.name, exc)

    # -- internals ----------------------------------------------------------------------------

    def _list_vms(self) -> list[repo.VM]:
        with self.installation.database.read() as session:
            return repo.list_vms(session)

    def _read_anchored(self) -> dict[str, dict[str, str]]:
        return anchored_segments(self.installation.database)

    async def _ensure(self, vm: repo.VM) -> ConsoleHub:
        target = parse_console_uri(vm.console_uri)
        hub = self.hubs.get(vm.name)
        if hub is not None and hub.target == target:
            return hub
        if hub is not None:
            await self._drop(vm.name, "the VM's console changed")
        hub = ConsoleHub(
            target,
            ssh_options=self._ssh_options,
            replay_lines=self.settings.replay_lines,
            console_log=self._log_for(vm.name, target),
            on_event=self._reporter(vm.name),
            opener=self._opener_for(vm.name) if self._opener_for else open_console,
        )
        self.hubs[vm.name] = hub
        return hub

    def _log_for(self, name: str, target: ConsoleTarget) -> ConsoleLogWriter | None:
        if not self.settings.enabled or isinstance(target, SshConsole):
            return None
        writer = self.logs.get(name)
        if writer is None:
            directory = log_directory(self.installation.home.console_logs_dir, name)
            writer = ConsoleLogWriter(directory, name, self.settings,
                                      anchored=self._anchored.get(name))
            writer.recover()
            self.logs[name] = writer
        return writer

    def _close_log(self, name: str) -> None:
        writer = self.logs.pop(name, None)
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                log.error("console log of %s: %s", name, exc)
            self._pending_records.extend(writer.drain_records())

    async def _drop(self, name: str, reason: str) -> None:
        hub = self.hubs.pop(name, None)
        if hub is not None:
            await hub.close(reason)

    def _reporter(self, vm: str) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
        async def report(event_type: str, details: dict[str, Any]) -> None:
            user = details.pop("user", None)
            session_id = details.pop("session_id", None)
            await self._audit(AuditEvent(event_type, self.actor, outcome="ok", vm=vm,
                                         user=user, session_id=session_id, details=details))

        return report

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for name, writer in list(self.logs.items()):
                try:
                    writer.tick()
                except OSError as exc:
                    log.error("console log of %s: %s", name, exc)
            await self._anchor_records()

    async def _anchor_records(self) -> None:
        records = self._pending_records
        self._pending_records = []
        for writer in self.logs.values():
            records.extend(writer.drain_records())
        if not records:
            return
        results = await asyncio.gather(
            *(self._audit(audit_event(record, self.actor)) for record in records),
            return_exceptions=True)
        for record, result in zip(records, results, strict=True):
            if isinstance(result, BaseException):
                log.error("console log segment %s of %s not anchored: %s", record.name,
                          record.vm, result)
                self._pending_records.append(record)  # retried on the next tick

    async def _reconciler(self) -> None:
        while True:
            await asyncio.sleep(self._reconcile_interval)
            with contextlib.suppress(Exception):
                await self.reconcile()


def _raise_file_limit() -> None:
    """A kept console holds a socket and an open log segment: two descriptors each, so a
    thousand VMs pass the common soft limit of 1024. Raise the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _mode(vm: repo.VM, keep: bool = True) -> KeepMode:
    if not keep:
        return KeepMode.ON_DEMAND
    try:
        return keep_mode(parse_console_uri(vm.console_uri), vm.keep)
    except ConsoleError:
        return KeepMode.ON_DEMAND
