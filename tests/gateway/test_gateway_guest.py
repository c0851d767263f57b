"""A real QEMU guest's serial console behind the gateway (TCG, a login prompt in ~4 s).

The guest comes from certgate/demo/guest.py: a cloud kernel and a static busybox initramfs
whose getty offers ``login:`` on ttyS0, connected to a Unix socket.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_testing import Gateway, details

from certgate.demo.guest import GuestImage, start_guest

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = 60.0


def test_log_in_on_a_real_guest_while_a_viewer_watches_the_same_output(
        gateway: Gateway, guest_image: GuestImage, short_tmp: Path) -> None:
    sock = short_tmp / "guest.sock"
    with start_guest(guest_image, sock):
        gateway.add_vm("vmq", f"unix:{sock}")
        uma = gateway.add_user("uma", "role=operator")
        vic = gateway.add_user("vic", "role=viewer")
        head = gateway.audit_head()

        operator = gateway.ssh(uma, "vmq")
        operator.expect("connected to vmq \\(interactive\\)")
        viewer = gateway.ssh(vic, "vmq")
        viewer.expect("connected to vmq \\(view-only\\)")
        operator.send("\r")
        operator.expect("login:", timeout=BOOT_TIMEOUT)
        operator.send("root\r")
        operator.expect("# ")
        operator.send("uname -a\r")
        operator.expect(r"Linux certgate-guest \S+")
        viewer.expect(r"Linux certgate-guest \S+")

        for client in (operator, viewer):
            client.send("\x1d")
            client.expect("Connection to 127.0.0.1 closed|\\Z|$", timeout=10)
            client.close()
        ends = gateway.wait_for_audit("session.end", after=head,
                                      match=lambda e: e.user == "uma")
        assert details(ends)["bytes_in"] > 0 and details(ends)["bytes_out"] > 0
        watcher = gateway.wait_for_audit("session.start", after=head,
                                         match=lambda e: e.user == "vic")
        assert details(watcher)["privileges"] == ["console.view"]
