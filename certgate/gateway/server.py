"""``certgate serve``: the asyncssh server that turns SSH logins into console sessions.

The SSH login name only says where the user wants to go (a VM, or anything else for the
list of reachable VMs); who they are was settled during authentication (``login.py``).
Live sessions are re-decided when the store's change counter moves (revocation, issue,
identity, policy or VM change; see ``rechecks.py``) or when a known time boundary passes, so
revoking a certificate or applying a policy that removes access ends sessions at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncssh
from cryptography.hazmat.primitives.serialization import Encoding

from ca.keys import read_private_key
from ca.ssh_certs import ssh_private_key
from certgate.access import (
    SYSTEM_CLOCK,
    AccessRefused,
    AccessService,
    Clock,
    Credential,
    Grant,
    Identity,
    explain,
)
from certgate.audit import sessions as session_log
from certgate.audit.chain import AuditEvent
from certgate.audit.checkpoints import CheckpointSigner, load_signer, write_checkpoint
from certgate.audit.writer import AuditWriter
from certgate.consolelog.settings import load_settings
from certgate.consoles.backends import UpstreamSshOptions
from certgate.consoles.hub import ConsoleHub, Opener
from certgate.display import printable
from certgate.errors import AuditError, CertgateError
from certgate.gateway.keepers import ConsoleKeepers
from certgate.gateway.log_command import LogRequest, parse_log_command, serve_log
from certgate.gateway.login import (
    LoginState,
    install_login_hook,
    keep_shared_options,
    peer_address,
    remove_login_hook,
)
from certgate.gateway.quickack import acknowledge_promptly, stop_prompt_acks
from certgate.gateway.rechecks import ChangeFeed, Waker, wait_for_wake
from certgate.gateway.session import (
    LiveSession,
    SessionEnvironment,
    run_console_session,
    wants_interaction,
)
from certgate.gateway.throttle import LoginThrottle, Verdict
from certgate.installation import Installation
from certgate.limits import LoginLimits
from certgate.observability import GatewayMetrics, GatewayObserver, MetricsServer, log_event
from certgate.observability.consoles import observed_opener
from certgate.policy import INTERACT, VIEW, VMInfo, console_write_mode
from certgate.policy.model import sorted_privileges
from certgate.store import repositories as repo

log = logging.getLogger(__name__)

try:
    import OpenSSL  # noqa: F401  (asyncssh needs pyOpenSSL for X.509 certificates)

    X509_AVAILABLE = True
except ImportError:
    X509_AVAILABLE = False

INFO_TARGETS = {"whoami"}
REVIEW_TARGET = "review"


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    gateway_id: str
    heartbeat_interval: float = 5.0
    stale_after: float = 60.0
    """Seconds: a live session whose heartbeat is older belongs to a dead gateway."""
    checkpoint_interval: float = 300.0
    limits: LoginLimits = field(default_factory=LoginLimits)
    keep_consoles: bool = True
    """Hold ``keep = always`` consoles; off on all replicas but one (QEMU serves one client)."""


class _Connection(asyncssh.SSHServer):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.state = LoginState(gateway.options.limits.max_auth_tries)
        self.conn: asyncssh.SSHServerConnection | None = None
        self.source: str | None = None
        self.admitted = False
        self.authenticated = False
        self.sessions_opened = 0
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        source = self.source = peer_address(conn)
        throttle = self.gateway.throttle
        refusal = throttle.connection_opened(source, time.monotonic())
        if refusal is not None:
            # Dropped before key exchange costs us anything (sshd's MaxStartups); counted in
            # the source's throttle summary rather than written one row per connection.
            conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, refusal.reason)
            return
        self.admitted = True
        acknowledge_promptly(conn)
        keep_shared_options(conn)

        async def audit(outcome: str, target: str, reason: str | None,
                        credential: Credential | None, user: str | None) -> None:
            verdict = (throttle.failure(source, time.monotonic()) if outcome == "deny"
                       else Verdict.AUDIT)
            if verdict is not Verdict.AUDIT:
                conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                "too many failed logins from this address; try later")
            if verdict is Verdict.SUPPRESS:
                return  # counted for the source's summary; neither logged nor written
            self.gateway.observer.login(outcome, user=user, target=target, source=source,
                                        credential=credential.kind if credential else None,
                                        reason=reason)
            if verdict is Verdict.THROTTLE:
                await self.gateway.audit(AuditEvent(
                    "auth.throttled", self.gateway.actor, outcome="deny", source=source,
                    details={"source": throttle.source_key(source),
                             "blocked_seconds": round(
                                 throttle.block_length(source, time.monotonic())),
                             "failures": self.gateway.options.limits.failure_burst + 1,
                             "window_seconds": self.gateway.options.limits.window}))
                return
            await self.gateway.audit(AuditEvent(
                "auth.login", self.gateway.actor, outcome=outcome, user=user, vm=target,
                source=source,
                details={"key": credential.ssh_fingerprint if credential else None,
                         "credential": credential.kind if credential else None,
                         "reason": reason},
            ))

        install_login_hook(conn, self.state, self.gateway.access, audit)

    def auth_completed(self) -> None:
        self.authenticated = True
        if self.conn is not None:
            stop_prompt_acks(self.conn)
            remove_login_hook(self.conn, self.state)
        self.gateway.throttle.connection_authenticated(self.source)
        idle = self.gateway.options.limits.idle_without_session
        if idle > 0:
            self._idle_timer = asyncio.get_running_loop().call_later(idle, self._idle_expired)

    def session_opened(self) -> None:
        self.sessions_opened += 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_expired(self) -> None:
        """An authenticated connection that opened no session (``ssh -N``) is closed."""
        self._idle_timer = None
        if self.sessions_opened or self.conn is None:
            return
        user = self.state.identity.user if self.state.identity else None
        self.gateway.spawn(self.gateway.audit(AuditEvent(
            "auth.idle", self.gateway.actor, outcome="deny", user=user, source=self.source,
            details={"reason": "no session opened within "
                               f"{self.gateway.options.limits.idle_without_session:g} s"})))
        self.conn.disconnect(asyncssh.DISC_BY_APPLICATION,
                             "no session opened: idle connection closed")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self.admitted:
            self.admitted = False
            self.gateway.throttle.connection_closed(self.source,
                                                    authenticated=self.authenticated)

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # The wrapped connection validator has already tied this key to an identity.
        return True

    def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return self.gateway.ssh_ca_key is not None and (
            key.public_data == self.gateway.ssh_ca_key.public_data
        )

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False


class Gateway:
    """One running gateway process."""

    def __init__(self, installation: Installation, options: ServeOptions,
                 observer: GatewayObserver | None = None, *,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.installation = installation
        self.options = options
        self.observer = observer or GatewayObserver()
        self.clock = clock
        self.access = AccessService(installation, clock=clock)
        self.actor = session_log.gateway_actor(options.gateway_id)
        self.live: dict[str, LiveSession] = {}
        self.audit_writer = AuditWriter(installation.audit)
        self.keepers: ConsoleKeepers | None = None
        self.throttle = LoginThrottle(options.limits)
        self._spawned: set[asyncio.Task[None]] = set()
        self.ssh_ca_key: asyncssh.SSHKey | None = None
        self._server: asyncssh.SSHAcceptor | None = None
        self._signer: CheckpointSigner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.feed = ChangeFeed(installation.database)
        self._mode_cache: dict[tuple[int, str, tuple[tuple[str, str], ...]], str] = {}
        self.waker: Waker | None = None
        self.env = SessionEnvironment(
            installation.database, installation.home.recordings_dir, options.gateway_id,
            self.live, self.observer,
            max_recording_bytes=installation.config.limits.max_recording_bytes,
            clock=clock, on_new_session=self._wake, audit_writer=self.audit_writer,
        )
        if self.observer.metrics is not None:
            self.observer.metrics.watch(live_sessions=lambda: len(self.live),
                                        audit_queue=lambda: self.audit_writer.depth,
                                        consoles=self.console_states)

    def _wake(self) -> None:
        if self.waker is not None:
            self.waker.wake()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> Sequence[int]:
        home = self.installation.home
        passphrase = self.installation.passphrase()
        host_key = ssh_private_key(read_private_key(home.host_key, passphrase))
        host_cert = asyncssh.read_certificate(str(home.host_ssh_cert))
        self.ssh_ca_key = asyncssh.read_public_key(str(home.ssh_ca_pub))
        self._upstream = UpstreamSshOptions(
            client_keys=[ssh_private_key(read_private_key(home.upstream_key, passphrase))],
            known_hosts=home.upstream_known_hosts,
            trusted_host_ca_keys=[home.ssh_ca_pub],
        )
        # Load the checkpoint signer up front: a wrong passphrase must stop start-up, not
        # surface at the first checkpoint.
        await self.audit_writer.start()
        self.console_log_settings = load_settings(home.config_path)
        self._signer = await asyncio.to_thread(load_signer, self.installation)
        await asyncio.to_thread(write_checkpoint, self.installation, self._signer)
        reaped = await asyncio.to_thread(
            session_log.reap_abnormal, self.installation.database, self.options.gateway_id, None
        )
        for session in reaped:
            log.warning("session %s of %s ended abnormally before this start", session.id,
                        session.user)
        ca_line = self.ssh_ca_key.export_public_key("openssh").decode().strip()
        root_pem = self.installation.root_certificate.public_bytes(Encoding.PEM)
        self._server = await asyncssh.create_server(
            lambda: _Connection(self),
            self.options.host,
            self.options.port,
            server_host_keys=[(host_key, host_cert)],
            authorized_client_keys=self._authorized_keys(ca_line, root_pem),
            **self._x509_options(root_pem),
            process_factory=self._handle,
            encoding=None,
            line_editor=False,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=self.options.limits.login_grace,
            reuse_address=True,
        )
        self.waker = Waker(asyncio.get_running_loop())
        self.clock.on_jump(self.waker.wake_threadsafe)
        await self.feed.start()
        self.keepers = ConsoleKeepers(
            self.installation, actor=self.actor, audit=self.audit_writer.append,
            settings=self.console_log_settings, ssh_options=self._upstream,
            write_modes_of=self._write_modes, keep=self.options.keep_consoles,
            opener_for=self._opener,
        )
        await self.keepers.start()
        self._tasks = [
            asyncio.create_task(self._watch()),
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._checkpoints()),
            asyncio.create_task(self._throttle_summaries()),
        ]
        await self.audit(AuditEvent("gateway.start", self.actor, outcome="ok",
                                    details={"listen": f"{self.options.host}:"
                                                       f"{self.options.port}"}))
        return [s.getsockname()[1] for s in self._server.sockets
                if s.family in (socket.AF_INET, socket.AF_INET6)]

    @staticmethod
    def _authorized_keys(ca_line: str, root_pem: bytes) -> asyncssh.SSHAuthorizedKeys:
        """Trust anchors for asyncssh's own certificate checks (validity, signatures).

        ``principals="*"`` makes asyncssh skip matching the login name against certificate
        principals: the login name names a VM here, and identity comes from our records.
        """
        lines = [f'cert-authority,principals="*" {ca_line}']
        if X509_AVAILABLE:
            cert = asyncssh.import_certificate(root_pem)
            lines.append("cert-authority " + cert.export_certificate("openssh").decode().strip())
        return asyncssh.import_authorized_keys("\n".join(lines) + "\n")

    @staticmethod
    def _x509_options(root_pem: bytes) -> dict[str, Any]:
        if not X509_AVAILABLE:
            log.info("pyOpenSSL is not installed: X.509 (RFC 6187) client certificates are off")
            return {}
        return {
            "x509_trusted_certs": [asyncssh.import_certificate(root_pem)],
            "x509_purposes": ["clientAuth"],
        }

    async def stop(self) -> None:
        for live in list(self.live.values()):
            live.terminate("the gateway is shutting down")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for _ in range(50):
            if not self.live:
                break
            await asyncio.sleep(0.1)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.feed.stop()
        if self.keepers is not None:
            await self.keepers.stop()
        await asyncio.gather(*self._spawned, return_exceptions=True)
        with contextlib.suppress(CertgateError):
            await self._write_summaries(final=True)
        with contextlib.suppress(CertgateError):
            await self.audit(AuditEvent("gateway.stop", self.actor, outcome="ok"))
        await self.audit_writer.close()
        with contextlib.suppress(CertgateError):
            await asyncio.to_thread(write_checkpoint, self.installation, self._signer)

    async def audit(self, event: AuditEvent) -> None:
        """Append and wait until committed (group commit shared with concurrent logins)."""
        try:
            await self.audit_writer.append(event)
        except CertgateError as exc:
            self.observer.database_error(f"audit append ({event.event_type})", exc)
            raise

    def console_states(self) -> dict[str, int]:
        """How many consoles are connected (a backend is open) and idle, for metrics."""
        hubs = list(self.hubs.values())
        connected = sum(1 for hub in hubs if hub.backend_open)
        return {"connected": connected, "idle": len(hubs) - connected}

    def spawn(self, work: Any) -> None:
        """Run a coroutine from a synchronous callback; stop() waits for it."""
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    # -- sessions -----------------------------------------------------------------------------

    @property
    def hubs(self) -> dict[str, ConsoleHub]:
        return self.keepers.hubs if self.keepers is not None else {}

    def _write_modes(self, vms: list[repo.VM]) -> dict[str, str]:
        version, policy = self.access.current_policy()
        modes = {vm.name: console_write_mode(policy, VMInfo(vm.name, vm.labels)) for vm in vms}
        if len(self._mode_cache) > 10_000:
            self._mode_cache.clear()
        for vm in vms:
            self._mode_cache[_mode_key(version, vm)] = modes[vm.name]
        return modes

    def _known_write_mode(self, grant: Grant) -> str | None:
        """The console write mode under the policy version the grant was decided with, if
        already computed (the keepers' reconcile computes it for every VM): a login then
        needs no second policy snapshot."""
        if grant.vm is None:
            return None
        return self._mode_cache.get(_mode_key(grant.policy_version, grant.vm))

    def _opener(self, vm_name: str) -> Opener:
        return observed_opener(self.observer, vm_name)

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        conn = process.channel.get_connection()
        owner = conn.get_owner()
        identity = owner.state.identity if isinstance(owner, _Connection) else None
        if isinstance(owner, _Connection):
            owner.session_opened()
        status = 1
        try:
            if identity is None:  # cannot happen after successful auth; fail closed anyway
                process.stdout.write(b"certgate: not authenticated\r\n")
            else:
                # Nothing is served before the login itself is durably audited.
                assert isinstance(owner, _Connection)
                await owner.state.wait_recorded()
                status = await self._serve(process, identity, peer_address(conn))
        except AuditError:
            with contextlib.suppress(Exception):
                process.stdout.write(b"certgate: the audit log cannot be written; "
                                     b"no session is opened\r\n")
        except (CertgateError, asyncssh.Error, ConnectionError, OSError) as exc:
            # The console URI and the backend's error go to the audit log, not to the user.
            with contextlib.suppress(Exception):
                process.stdout.write(b"certgate: console unavailable\r\n")
            with contextlib.suppress(Exception):
                await self.audit(AuditEvent(
                    "session.error", self.actor, outcome="error",
                    user=identity.user if identity else None,
                    vm=process.get_extra_info("username"), source=peer_address(conn),
                    details={"reason": f"{type(exc).__name__}: {exc}"}))
        except Exception:
            log.exception("session handler failed")
            with contextlib.suppress(Exception):
                process.stdout.write(b"certgate: internal error; the session is closed\r\n")
        finally:
            with contextlib.suppress(Exception):
                process.exit(status)

    async def _serve(self, process: asyncssh.SSHServerProcess[bytes], identity: Identity,
                     source: str | None) -> int:
        target = process.get_extra_info("username") or ""
        if process.subsystem is not None:
            await self.audit(AuditEvent(
                "session.refused", self.actor, outcome="deny", user=identity.user, vm=target,
                serial=identity.serial, source=source,
                details={"reason": "unknown subsystem", "subsystem": process.subsystem[:256]}))
            process.stdout.write(f"certgate: subsystem {printable(process.subsystem[:64])!r} "
                                 f"is not offered\r\n".encode())
            return 1
        command = (process.command or "").strip() or None
        if target in INFO_TARGETS or command == "whoami":
            await self._whoami(process, identity)
            return 0
        if target == REVIEW_TARGET and command is None:
            return await self._review_link(process, identity, source)
        log_request: LogRequest | None = None
        if command is not None and command.split(maxsplit=1)[0] == "log":
            try:
                log_request = parse_log_command(command)
            except CertgateError as exc:
                process.stdout.write(f"certgate: {printable(str(exc)[:200])}\r\n".encode())
                return 2
        elif command not in (None, "view"):
            process.stdout.write(f"certgate: unknown command {printable(command[:64])!r} "
                                 f"(use: view, log, whoami)\r\n".encode())
            return 2
        started = time.perf_counter()
        try:
            grant = await asyncio.to_thread(self.access.decide, identity, target, source)
        except AccessRefused:
            await self._list(process, identity, source, target)
            return 0 if command is None else 1
        if log_request is not None:
            return await serve_log(process, grant, log_request, source=source,
                                   logs_dir=self.installation.home.console_logs_dir,
                                   audit=self.audit, actor=self.actor)
        interactive = wants_interaction(grant, command)
        self.observer.decision(
            grant.allowed and interactive is not None, time.perf_counter() - started,
            user=identity.user, vm=target, source=source,
            mode=None if interactive is None else ("interactive" if interactive else "view"),
            reasons=list(grant.decision.reasons))
        if not grant.allowed or interactive is None:
            await self.audit(self._decision_event(grant, source, interactive))
            text = explain(grant) if not grant.allowed else "view-only access is not granted"
            lines = "\r\n".join(f"  {line}" for line in text.splitlines())
            process.stdout.write(
                f"certgate: access to {target} denied\r\n{lines}\r\n".encode())
            return 1
        assert grant.vm is not None
        assert self.keepers is not None
        hub = await self.keepers.hub_for(grant.vm, write_mode=self._known_write_mode(grant))
        # The allowing decision is committed with the session start (one commit, both or
        # neither), before the console is attached; built in the call so that no local here
        # holds it for the session's lifetime.
        return await run_console_session(
            process, hub, grant, interactive=interactive, source=source, env=self.env,
            decision_event=self._decision_event(grant, source, interactive))

    def _decision_event(self, grant: Grant, source: str | None,
                        interactive: bool | None) -> AuditEvent:
        allowed = grant.allowed and interactive is not None
        return AuditEvent(
            "access.decide", self.actor, outcome="allow" if allowed else "deny",
            user=grant.identity.user, vm=grant.vm.name if grant.vm else None,
            serial=grant.identity.serial, source=source,
            details={
                "key": grant.identity.credential.ssh_fingerprint,
                "privileges": sorted_privileges(grant.decision.privileges),
                "mode": None if interactive is None else (
                    "interactive" if interactive else "view"),
                "matched_rules": list(grant.decision.matched_rules),
                "reasons": list(grant.decision.reasons),
                "attributes": grant.attributes.as_dict(),
                "attribute_certificates": list(grant.attribute_serials),
                "rejected_attribute_certificates": list(grant.rejected_attribute_certificates),
                "policy_version": grant.policy_version,
            },
        )

    async def _whoami(self, process: asyncssh.SSHServerProcess[bytes],
                      identity: Identity) -> None:
        try:
            approval = await asyncio.to_thread(self.access.approval_at_gateway, identity)
        except AccessRefused as exc:
            process.stdout.write(f"certgate: {exc}\r\n".encode())
            return
        attributes, serials = approval.attributes, approval.approved
        rejected = [str(r) for r in approval.rejected]
        lines = [
            f"user        {identity.user}",
            f"identity    {identity.serial} (valid until {identity.not_after.isoformat()})",
            f"credential  {identity.credential.kind} {identity.credential.ssh_fingerprint}",
            f"attributes  {attributes.describe() or '(none)'}",
            f"from ACs    {', '.join(serials) or '(none)'}",
        ]
        lines += [f"rejected    {r}" for r in rejected]
        process.stdout.write(("\r\n".join(lines) + "\r\n").encode())

    async def _review_link(self, process: asyncssh.SSHServerProcess[bytes],
                           identity: Identity, source: str | None) -> int:
        """``ssh review@gateway``: a one-time sign-in link for the review site."""
        from certgate.web.reviewers import ReviewerAccess
        from certgate.web.signin import LINK_LIFETIME, issue_link

        try:
            await asyncio.to_thread(
                ReviewerAccess(self.installation, self.access).identity_for_link,
                identity, source)
        except AccessRefused as exc:
            await self.audit(AuditEvent("review.link", self.actor, outcome="deny",
                                        user=identity.user, serial=identity.serial,
                                        source=source, details={"reason": str(exc)}))
            process.stdout.write(f"certgate: no review access: {exc}\r\n".encode())
            return 1
        token = await asyncio.to_thread(
            issue_link, self.installation.database, user=identity.user,
            identity_serial=identity.serial, not_after=identity.not_after, source=source)
        await self.audit(AuditEvent("review.link", self.actor, outcome="ok",
                                    user=identity.user, serial=identity.serial, source=source,
                                    details={"lifetime_seconds":
                                             int(LINK_LIFETIME.total_seconds())}))
        base = (self.installation.config.web_url
                or f"https://{self.installation.config.gateway_name}:8443").rstrip("/")
        minutes = int(LINK_LIFETIME.total_seconds() // 60)
        process.stdout.write(
            f"Sign in to the review site (works once, for {minutes} minutes):\r\n"
            f"  {base}/signin/{token}\r\n".encode())
        return 0

    async def _list(self, process: asyncssh.SSHServerProcess[bytes], identity: Identity,
                    source: str | None, target: str) -> None:
        reachable = await asyncio.to_thread(self.access.reachable, identity, source)
        lines = [f"certgate: no VM named {target!r}." if target else "certgate:",
                 f"VMs {identity.user} may reach now:"]
        if not reachable:
            lines.append("  (none)")
        for vm, decision in reachable:
            lines.append(f"  {vm.name:<20} {', '.join(sorted_privileges(decision.privileges))}")
        lines.append(f"connect with: ssh -t -p {self.options.port} VM@<gateway>  "
                     f"(add `view` to watch without typing, `log` to read the console log)")
        process.stdout.write(("\r\n".join(lines) + "\r\n").encode())

    # -- background duties --------------------------------------------------------------------

    async def _watch(self) -> None:
        """Re-decide live sessions when the store changes or a time boundary passes."""
        assert self.waker is not None
        while True:
            deadlines = [d for d in (live.deadline() for live in self.live.values()
                                     if not live.ended.is_set()) if d]
            changed = await wait_for_wake(self.feed, self.waker, self.clock,
                                          min(deadlines) if deadlines else None)
            try:
                await self.recheck(everything=changed)
            except Exception:  # sessions are ended before auditing: keep watching
                log.exception("re-check round failed")

    async def recheck(self, *, everything: bool) -> None:
        """End sessions past a limit; re-decide all sessions (after a store change) or those
        whose grant reached its time boundary, from one snapshot."""
        now = self.clock.now()
        due: list[LiveSession] = []
        for live in list(self.live.values()):
            if live.ended.is_set():
                continue
            limit = live.limit_reached(now)
            if limit:
                live.terminate(limit)
            elif (everything or live.grant.change_counter != self.feed.counter
                  or (live.grant.valid_until is not None and live.grant.valid_until <= now)):
                # A session decided before a change that the last full round did not see
                # (it was not live yet) is re-decided as soon as it goes live.
                due.append(live)
        if not due:
            return
        requests = [(live.grant, live.source, INTERACT if live.interactive else VIEW)
                    for live in due]
        try:
            outcomes = await asyncio.to_thread(self.access.redecide, requests, now)
        except Exception as exc:  # fail closed: an error re-checking ends the sessions
            log.error("re-check failed: %s", exc)
            failure = f"access could not be re-checked ({type(exc).__name__})"
            outcomes = [(None, failure)] * len(due)
        for live, (fresh, reason) in zip(due, outcomes, strict=True):
            if reason is None:
                if fresh is not None:
                    live.grant = fresh
                continue
            live.terminate(reason)
            self.observer.session_revoked(
                live.session_id, user=live.grant.identity.user,
                vm=live.grant.vm.name if live.grant.vm else None, reason=reason)
            await self.audit(AuditEvent(
                "session.revoked", self.actor, outcome="deny",
                user=live.grant.identity.user,
                vm=live.grant.vm.name if live.grant.vm else None,
                serial=live.grant.identity.serial, source=live.source,
                session_id=live.session_id, details={"reason": reason}))

    async def _heartbeat(self) -> None:
        """Mark our live sessions as served; end anyone's whose gateway stopped beating."""
        while True:
            await asyncio.sleep(self.options.heartbeat_interval)
            try:
                await asyncio.to_thread(session_log.heartbeat_all,
                                        self.installation.database, list(self.live))
            except CertgateError as exc:
                self.observer.database_error("session heartbeat", exc)
            with contextlib.suppress(CertgateError):
                await asyncio.to_thread(
                    session_log.reap_abnormal, self.installation.database, None,
                    timedelta(seconds=self.options.stale_after),
                    reaper=self.options.gateway_id,
                )

    async def _throttle_summaries(self) -> None:
        """One audit row per throttled source and window, however many attempts it made."""
        while True:
            await asyncio.sleep(self.options.limits.window)
            try:
                await self._write_summaries()
            except CertgateError as exc:
                log.error("could not audit throttled sources: %s", exc)

    async def _write_summaries(self, *, final: bool = False) -> None:
        for summary in self.throttle.due_summaries(time.monotonic(), final=final):
            await self.audit(AuditEvent(
                "auth.throttled", self.actor, outcome="deny", source=summary.source,
                details={"source": summary.source, "refused_attempts": summary.refused,
                         "seconds": round(summary.seconds), "summary": summary.describe()}))

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.options.checkpoint_interval)
            try:
                await asyncio.to_thread(write_checkpoint, self.installation, self._signer)
            except CertgateError as exc:
                log.error("audit checkpoint failed: %s", exc)


def _mode_key(version: int, vm: repo.VM) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    return version, vm.name, tuple(sorted(vm.labels.items()))


async def wait_for_termination() -> None:
    """Return on SIGINT or SIGTERM, so callers can shut down in an orderly way."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_forever(installation: Installation, options: ServeOptions,
                        ready: Any = None, *,
                        metrics_listen: tuple[str, int] | None = None,
                        clock: Clock = SYSTEM_CLOCK) -> None:
    """Run until SIGINT/SIGTERM; ``metrics_listen`` opts into Prometheus ``/metrics``."""
    metrics = GatewayMetrics() if metrics_listen is not None else None
    gateway = Gateway(installation, options, GatewayObserver(metrics), clock=clock)
    ports = await gateway.start()
    exporter = None
    if metrics is not None and metrics_listen is not None:
        exporter = MetricsServer(metrics, *metrics_listen)
        log_event("metrics.listen", "metrics served",
                  address=f"http://{metrics_listen[0]}:{exporter.port}/metrics")
    if ready is not None:
        ready(ports)
    try:
        await wait_for_termination()
    finally:
        await gateway.stop()
        if exporter is not None:
            exporter.close()
