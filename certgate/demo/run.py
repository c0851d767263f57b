"""``certgate demo``: a complete, throwaway installation a newcomer can ``ssh`` into.

It creates a fresh home (CA, AA, gateway keys), two users with keys and attribute
certificates, a policy, and one VM: a real QEMU guest when QEMU and a kernel are available,
otherwise the simulated console, which says what it is. Then it serves on loopback and
prints the exact ``ssh`` commands to paste. The demo's keys are stored unencrypted because
the installation is disposable; a real one is made with ``certgate init``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from ca import keys
from ca.attributes import parse_attribute_assignments
from certgate.demo.simulated import SimulatedConsole
from certgate.errors import ConflictError
from certgate.fleet import add_vm, apply_policy
from certgate.gateway.server import Gateway, ServeOptions, wait_for_termination
from certgate.home import Home
from certgate.installation import Installation
from certgate.provisioning import InitOptions, create_installation, known_hosts_line

MARKER = ".certgate-demo"

DEMO_POLICY = """\
version: 1
description: certgate demo policy
rules:
  - name: operators-on-demo-vms
    effect: allow
    vms: {labels: {env: demo}}
    require: {roles: [operator], clearance: confidential}
    privileges: [console.interact, console.break, console.force, console.log]
    when: {sources: [127.0.0.0/8, "::1/128"]}
    session: {max: 8h, idle: 30m}
  - name: auditors-watch
    effect: allow
    vms: {labels: {env: demo}}
    require: {roles: [auditor]}
    privileges: [console.view]
"""


@dataclass(frozen=True)
class DemoUser:
    name: str
    key_path: Path
    attributes: tuple[str, ...]


def prepare_home(root: Path) -> Home:
    """A fresh home at ``root``; an earlier demo there is replaced, anything else refused."""
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise ConflictError(f"{root} exists and is not a certgate demo; choose another --home")
        shutil.rmtree(root)
    return Home(root)


def _write_user_key(directory: Path, name: str) -> tuple[Path, keys.PublicKey]:
    key = keys.generate_private_key("ed25519")
    path = directory / name
    path.write_bytes(b"")
    path.chmod(0o600)
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    return path, key.public_key()


def populate(home: Home, port: int, console_uri: str) -> tuple[Installation, list[DemoUser]]:
    create_installation(
        home,
        InitOptions(gateway_name="certgate-demo", listen_port=port),
        passphrase=None,
        actor="demo",
    )
    (home.root / MARKER).write_text("created by `certgate demo`; safe to delete\n")
    inst = Installation(home, actor="demo")
    users_dir = home.root / "users"
    users_dir.mkdir(mode=0o700)
    users = [
        DemoUser("demo", users_dir / "demo", ("role=operator", "group=demo",
                                               "clearance=confidential")),
        DemoUser("watcher", users_dir / "watcher", ("role=auditor",)),
    ]
    for user in users:
        _, public = _write_user_key(users_dir, user.name)
        inst.ca.add_user(user.name, email=f"{user.name}@example.invalid", public_key=public,
                      days=30)
        inst.ca.grant(user.name, parse_attribute_assignments(list(user.attributes)),
                   valid_for=timedelta(hours=12))
    add_vm(inst, "vm01", console_uri, {"env": "demo"})
    (home.root / "policy.yaml").write_text(DEMO_POLICY)
    apply_policy(inst, DEMO_POLICY, "policy.yaml")
    (home.root / "known_hosts").write_text(known_hosts_line(home, inst.config) + "\n")
    return inst, users


@contextlib.contextmanager
def demo_console(home: Home, *, want_qemu: bool,
                 say: Callable[[str], None]) -> Iterator[tuple[str, str, SimulatedConsole | None]]:
    """Yield (console URI, description, simulated console to start or None)."""
    socket_path = home.root.parent / f".{home.root.name}-vm01.sock"
    uri = f"unix:{socket_path}"
    with contextlib.ExitStack() as stack:
        stack.callback(socket_path.unlink, missing_ok=True)
        if want_qemu:
            try:
                from certgate.demo import guest

                say("building the demo guest (kernel + busybox initramfs; cached after the "
                    "first run)...")
                image = guest.build_test_guest()
                stack.enter_context(guest.start_guest(image, socket_path))
            except Exception as exc:  # any failure to boot the optional guest: fall back
                say(f"no QEMU guest ({exc}); using the simulated console instead")
            else:
                yield uri, "a real QEMU guest (TCG); at `login:` type root, no password", None
                return
        yield uri, "the SIMULATED serial console (not a real VM)", SimulatedConsole(socket_path)


def ssh_command(home: Home, port: int, key: Path, target: str, extra: str = "") -> str:
    known = home.root / "known_hosts"
    # -t: with a command (view, log) ssh allocates no pty by default; without one, the
    # user's own terminal echoes what they type and line-buffers it (Ctrl-] needs Enter).
    command = (f"ssh -t -F /dev/null -o UserKnownHostsFile={known} -o IdentitiesOnly=yes "
               f"-i {key} -p {port} {target}@127.0.0.1")
    return f"{command} {extra}".rstrip()


def free_port(preferred: int) -> int:
    for candidate in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def run_demo(root: Path, *, port: int, want_qemu: bool, say: Callable[[str], None]) -> None:
    home = prepare_home(root)
    port = free_port(port)
    with demo_console(home, want_qemu=want_qemu, say=say) as (uri, description, simulated):
        inst, users = populate(home, port, uri)
        asyncio.run(_serve(inst, home, port, users, description, simulated, say))


async def _serve(inst: Installation, home: Home, port: int, users: list[DemoUser],
                 description: str, simulated: SimulatedConsole | None,
                 say: Callable[[str], None]) -> None:
    if simulated is not None:
        await simulated.start()
    gateway = Gateway(inst, ServeOptions(host="127.0.0.1", port=port, gateway_id="demo"))
    await gateway.start()
    demo, watcher = users
    say("")
    say(f"certgate demo is running on 127.0.0.1:{port} (Ctrl-C stops it)")
    say(f"  home: {home.root}   VM vm01: {description}")
    say("")
    say("  open vm01's console (interactive; Ctrl-] leaves, Ctrl-E c ? shows the escape menu):")
    say(f"    {ssh_command(home, port, demo.key_path, 'vm01')}")
    say("  watch it read-only as another user:")
    say(f"    {ssh_command(home, port, watcher.key_path, 'vm01', 'view')}")
    say("  read what the console printed while nobody watched (kept and logged):")
    say(f"    {ssh_command(home, port, demo.key_path, 'vm01', 'log --since 10m')}")
    say("  who am I, what may I reach:")
    say(f"    {ssh_command(home, port, demo.key_path, 'whoami')}")
    say(f"    {ssh_command(home, port, demo.key_path, 'anything')}")
    say("  review what happened:")
    prog = "certgate" if shutil.which("certgate") else f"{sys.executable} -m certgate"
    say(f"    {prog} --home {home.root} audit list")
    say(f"    {prog} --home {home.root} audit verify")
    say(f"    {prog} --home {home.root} console log vm01 --since 10m")
    try:
        await wait_for_termination()
    finally:
        say("stopping the demo gateway...")
        await gateway.stop()
        if simulated is not None:
            await simulated.stop()
        inst.close()
