"""A tiny QEMU guest with a serial console, for the demo and for console and gateway tests.

``build_test_guest(cache_dir)`` returns a Debian cloud kernel plus a busybox initramfs whose
``/init`` mounts proc/sys/devtmpfs, names the host ``certgate-guest`` and keeps a
``getty -L ttyS0 115200 vt100`` running on the serial line: ``login:`` as ``root`` with no
password gives a busybox shell. ``start_guest(image, socket_path)`` boots it under TCG with
the serial line on a QEMU chardev socket, the way a hypervisor host exposes VM consoles.

Build results are cached by content (kernel version, busybox binary, init script), so CI
pays the download once. Pre-build from CI with::

    python -m certgate.demo.guest build [CACHE_DIR]

Nothing here runs ``apt-get update``: when the package lists are missing the build raises
GuestUnavailable, and tests turn that into a skip with the reason.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
QEMU = "qemu-system-x86_64"
HOSTNAME = "certgate-guest"
BUILDER_VERSION = "1"

INIT_SCRIPT = f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
hostname {HOSTNAME}
echo 1 > /proc/sys/kernel/sysrq
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
while true; do
    setsid getty -L ttyS0 115200 vt100
    sleep 0.2
done
"""

ETC_FILES = {
    "etc/passwd": "root::0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
    "etc/profile": "export PS1='# '\n",
}


class GuestUnavailable(Exception):
    """The test guest cannot be built or booted here; tests skip with this message."""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path


def default_cache_dir() -> Path:
    env = os.environ.get("CERTGATE_TEST_GUEST_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "certgate-test-guest"


def build_test_guest(cache_dir: Path | None = None) -> GuestImage:
    """Return a bootable kernel + initramfs, building (and caching) what is missing."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    if shutil.which(QEMU) is None:
        raise GuestUnavailable(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
    return GuestImage(kernel=_kernel(cache_dir), initrd=_initrd(cache_dir))


def _kernel(cache_dir: Path) -> Path:
    version = _kernel_package()
    if version is None:
        cached = sorted(cache_dir.glob("kernel-*/vmlinuz"))
        if cached:
            return cached[-1]
        raise GuestUnavailable(
            "cannot resolve linux-image-cloud-amd64 (apt package lists missing?"
            " run apt-get update first)"
        )
    target = cache_dir / f"kernel-{version}" / "vmlinuz"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(prefix="certgate-kernel-") as tmp:
        result = subprocess.run(
            ["apt-get", "download", version], cwd=tmp, capture_output=True, text=True
        )
        debs = list(Path(tmp).glob("*.deb"))
        if result.returncode != 0 or not debs:
            raise GuestUnavailable(f"apt-get download {version} failed: {result.stderr.strip()}")
        root = Path(tmp) / "root"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(root)], check=True)
        images = sorted((root / "boot").glob("vmlinuz-*"))
        if not images:
            raise GuestUnavailable(f"{debs[0].name} contains no boot/vmlinuz-*")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copyfile(images[0], partial)
        partial.replace(target)
    return target


def _kernel_package() -> str | None:
    """Resolve the versioned kernel package behind the linux-image-cloud-amd64 metapackage."""
    try:
        result = subprocess.run(
            ["apt-cache", "depends", "linux-image-cloud-amd64"], capture_output=True, text=True
        )
    except FileNotFoundError:
        return None
    match = re.search(r"Depends:\s*(linux-image-[0-9][^\s]*-cloud-amd64)", result.stdout)
    return match.group(1) if match else None


def _initrd(cache_dir: Path) -> Path:
    if not BUSYBOX.exists():
        raise GuestUnavailable(f"{BUSYBOX} missing (apt-get install busybox-static)")
    busybox = BUSYBOX.read_bytes()
    key = hashlib.sha256()
    for part in (BUILDER_VERSION, INIT_SCRIPT, repr(sorted(ETC_FILES.items()))):
        key.update(part.encode())
    key.update(busybox)
    target = cache_dir / f"initrd-{key.hexdigest()[:16]}.cpio.gz"
    if target.exists():
        return target
    applets = subprocess.run(
        [str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    archive = _Cpio()
    for directory in (
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "etc",
        "proc",
        "sys",
        "root",
        "tmp",
    ):
        archive.directory(directory)
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", busybox, 0o755)
    for applet in applets:
        if applet != "bin/busybox" and applet.count("/") <= 2:
            archive.symlink(applet, "/bin/busybox")
    archive.file("init", INIT_SCRIPT.encode(), 0o755)
    for name, content in ETC_FILES.items():
        archive.file(name, content.encode(), 0o644)
    partial = target.with_suffix(".partial")
    partial.write_bytes(gzip.compress(archive.finish(), mtime=0))
    partial.replace(target)
    return target


class _Cpio:
    """A minimal cpio "newc" writer: deterministic and able to add device nodes without root."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1
        self._seen: set[str] = set()

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        if name in self._seen:
            return
        self._seen.add(name)
        encoded = name.encode() + b"\0"
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
        self._ino += 1
        header = b"070701" + b"".join(b"%08x" % value for value in fields)
        self._out.write(header + encoded)
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def qemu_command(image: GuestImage, socket_path: Path, *, telnet: bool = False) -> list[str]:
    chardev = f"socket,id=c0,path={socket_path},server=on,wait=off"
    if telnet:
        chardev += ",telnet=on"
    return [
        QEMU,
        "-machine",
        "pc",
        "-accel",
        "tcg",
        "-m",
        "128",
        "-no-reboot",
        "-nographic",
        "-nodefaults",
        "-chardev",
        chardev,
        "-serial",
        "chardev:c0",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        "console=ttyS0 quiet panic=-1",
    ]


@contextlib.contextmanager
def start_guest(
    image: GuestImage, socket_path: Path, *, telnet: bool = False, ready_timeout: float = 10.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run the guest until the block ends; the console socket exists when the block starts.

    QEMU is killed (its own process group) and reaped on exit, whatever happened inside.
    """
    socket_path = Path(socket_path)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    proc = subprocess.Popen(
        qemu_command(image, socket_path, telnet=telnet),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + ready_timeout
        while not socket_path.exists():
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise GuestUnavailable(f"qemu exited with {proc.returncode}: {err.strip()}")
            if time.monotonic() > deadline:
                raise GuestUnavailable(f"qemu did not create {socket_path} in {ready_timeout}s")
            time.sleep(0.02)
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] != "build":
        print("usage: guest.py build [CACHE_DIR]", file=sys.stderr)
        return 2
    cache = Path(argv[1]) if len(argv) > 1 else None
    try:
        image = build_test_guest(cache)
    except GuestUnavailable as exc:
        print(f"guest.py: {exc}", file=sys.stderr)
        return 1
    print(f"kernel {image.kernel}\ninitrd {image.initrd}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
