"""The smallest telnet client that lets the gateway send a serial break through QEMU.

QEMU's ``-chardev socket,...,telnet=on`` turns a received ``IAC BREAK`` into a break on the
emulated serial line (Linux then offers magic SysRq). A raw socket chardev has no way to
carry a break, which is why the URI says ``?telnet`` when the operator enabled it.

Sans-I/O, like the multiplexer: ``decode`` strips telnet commands from what QEMU sends and
returns the replies to write back; ``encode`` escapes 0xFF in console input. Options are
refused (``DONT``/``WONT``) except BINARY, which keeps the stream 8-bit clean; each option
is answered at most once so two refusing peers cannot loop.
"""

from __future__ import annotations

IAC = 255
DONT = 254
DO = 253
WONT = 252
WILL = 251
SB = 250
SE = 240
BREAK = 243
BINARY = 0

_DATA, _IAC, _OPTION, _SUB, _SUB_IAC = range(5)


class TelnetCodec:
    """Stateful decoder/encoder for one telnet connection (commands may split across reads)."""

    def __init__(self) -> None:
        self._state = _DATA
        self._verb = 0
        self._answered: set[tuple[int, int]] = set()

    def decode(self, data: bytes) -> tuple[bytes, bytes]:
        """Return (console bytes, bytes to send back to the server)."""
        out = bytearray()
        replies = bytearray()
        for byte in data:
            if self._state == _DATA:
                if byte == IAC:
                    self._state = _IAC
                else:
                    out.append(byte)
            elif self._state == _IAC:
                if byte == IAC:
                    out.append(IAC)
                    self._state = _DATA
                elif byte in (WILL, WONT, DO, DONT):
                    self._verb = byte
                    self._state = _OPTION
                elif byte == SB:
                    self._state = _SUB
                else:
                    self._state = _DATA
            elif self._state == _OPTION:
                replies += self._answer(self._verb, byte)
                self._state = _DATA
            elif self._state == _SUB:
                if byte == IAC:
                    self._state = _SUB_IAC
            else:  # _SUB_IAC
                self._state = _DATA if byte == SE else _SUB
        return bytes(out), bytes(replies)

    def _answer(self, verb: int, option: int) -> bytes:
        if verb not in (WILL, DO) or (verb, option) in self._answered:
            return b""
        self._answered.add((verb, option))
        if option == BINARY:
            return bytes((IAC, DO if verb == WILL else WILL, option))
        return bytes((IAC, DONT if verb == WILL else WONT, option))

    @staticmethod
    def encode(data: bytes) -> bytes:
        """Escape console input so a literal 0xFF is not read as a command."""
        return data.replace(b"\xff", b"\xff\xff")

    @staticmethod
    def break_command() -> bytes:
        return bytes((IAC, BREAK))
