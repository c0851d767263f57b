"""Stands in for ``xl console DOMAIN`` / ``virsh console VM`` in the exec-backend tests.

Prints whether stdin is a tty and the window size, reprints the size on SIGWINCH, echoes
input lines, and starts a grandchild that ignores SIGHUP (printing its pid) so tests can
check that closing the console kills the whole process group.
"""

import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios


def size() -> str:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
    return f"{cols}x{rows}"


def on_winch(signum: int, frame: object) -> None:
    print(f"SIZE {size()}", flush=True)


def main() -> None:
    signal.signal(signal.SIGWINCH, on_winch)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_IGN); time.sleep(600)",
        ]
    )
    print(f"TTY {os.isatty(0)} CTTY {os.tcgetpgrp(0) == os.getpgrp()}", flush=True)
    print(f"SIZE {size()}", flush=True)
    print(
        f"TERM {os.environ.get('TERM')} SECRET {os.environ.get('CERTGATE_CA_PASSPHRASE')}",
        flush=True,
    )
    print(f"CHILD {child.pid}", flush=True)
    for line in sys.stdin:
        if line.strip() == "exit":
            sys.exit(3)
        print(f"GOT {line.strip()}", flush=True)


if __name__ == "__main__":
    main()
