"""End to end against a real QEMU guest's serial console (TCG, ~3-4 s to a login prompt)."""

import re

import pytest
from console_testing import read_until, run

from certgate.consoles import ConsoleHub, UnixSocketConsole, open_console
from certgate.demo.guest import start_guest

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = 60.0


def test_login_on_the_serial_console_and_run_a_command(guest_image, short_tmp):
    sock = short_tmp / "console.sock"
    with start_guest(guest_image, sock):

        async def body():
            console = await open_console(UnixSocketConsole(str(sock)))
            try:
                await read_until(console.read, b"login:", timeout=BOOT_TIMEOUT)
                await console.write(b"root\r")
                await read_until(console.read, b"# ")
                await console.write(b"uname -a\r")
                out = await read_until(console.read, re.compile(rb"Linux certgate-guest \S+"))
                assert b"Linux certgate-guest" in out
            finally:
                await console.close()

        run(body(), timeout=BOOT_TIMEOUT + 30)


def test_two_hub_sessions_share_the_console_and_a_viewer_cannot_type(guest_image, short_tmp):
    sock = short_tmp / "console.sock"
    with start_guest(guest_image, sock):

        async def body():
            hub = ConsoleHub(UnixSocketConsole(str(sock)))
            operator = await hub.attach("operator", can_interact=True)
            viewer = await hub.attach("viewer", can_interact=False)
            try:
                await read_until(lambda: anext(operator), b"login:", timeout=BOOT_TIMEOUT)
                await operator.send(b"root\r")
                await read_until(lambda: anext(operator), b"# ")
                await viewer.send(b"touch /tmp/viewer-was-here\r")
                await operator.send(b"echo marker-$((40+2)); ls /tmp/viewer-was-here\r")
                seen_by_operator = await read_until(lambda: anext(operator), b"No such file")
                seen_by_viewer = await read_until(lambda: anext(viewer), b"No such file")
                assert b"marker-42" in seen_by_operator
                assert b"marker-42" in seen_by_viewer
                assert b"touch" not in seen_by_viewer
                assert viewer.stats.input_dropped_bytes == len(b"touch /tmp/viewer-was-here\r")
            finally:
                await operator.detach()
                await viewer.detach()
            assert not hub.backend_open

        run(body(), timeout=BOOT_TIMEOUT + 30)


def test_telnet_chardev_carries_a_serial_break_to_the_guest(guest_image, short_tmp):
    """A break followed by 'h' within 5 s is the kernel's magic SysRq help request."""
    sock = short_tmp / "console.sock"
    with start_guest(guest_image, sock, telnet=True):

        async def body():
            console = await open_console(UnixSocketConsole(str(sock), telnet=True))
            try:
                await read_until(console.read, b"login:", timeout=BOOT_TIMEOUT)
                assert await console.send_break() is True
                await console.write(b"h")
                await read_until(console.read, re.compile(rb"(?i)sysrq"))
            finally:
                await console.close()

        run(body(), timeout=BOOT_TIMEOUT + 30)
