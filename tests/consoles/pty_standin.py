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


def say(text: str) -> None:
    # os.write, not print: the SIGWINCH handler may run while the main code is printing, and
    # a buffered print inside a print raises "reentrant call".
    os.write(1, f"{text}\n".encode())


def on_winch(signum: int, frame: object) -> None:
    say(f"SIZE {size()}")


def main() -> None:
    signal.signal(signal.SIGWINCH, on_winch)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_IGN); time.sleep(600)",
        ]
    )
    say(f"TTY {os.isatty(0)} CTTY {os.tcgetpgrp(0) == os.getpgrp()}")
    say(f"SIZE {size()}")
    say(f"TERM {os.environ.get('TERM')} SECRET {os.environ.get('CERTGATE_CA_PASSPHRASE')}")
    say(f"CHILD {child.pid}")
    for line in sys.stdin:
        if line.strip() == "exit":
            sys.exit(3)
        say(f"GOT {line.strip()}")


if __name__ == "__main__":
    main()
