"""Filtering recorded terminal output before it is replayed on an admin's terminal.

Replay writes what the guest wrote, escape sequences included: that is the point. But a guest
is outside data, and some sequences act on the viewer's machine rather than the picture:
OSC 52 writes the clipboard, other OSC strings set titles/colours/hyperlinks or query them,
DCS/APC/PM/SOS strings program the terminal, and the query sequences (device status, device
attributes, window reports) make the terminal *type* an answer into whatever reads its input
after replay ends. ``TerminalStreamFilter`` drops those and passes everything else; it is a
streaming state machine, so a sequence split across recorded events is still recognised, and
it does constant work per character.
"""

from __future__ import annotations

ESC = "\x1b"
BEL = "\x07"
# CSI final bytes of queries that make the terminal answer on its input.
_QUERY_FINALS = frozenset("nct")
_STRING_INTRODUCERS = {"]": "osc", "P": "dcs", "X": "sos", "^": "pm", "_": "apc"}
_C1_STRINGS = {"\x9d": "osc", "\x90": "dcs", "\x98": "sos", "\x9e": "pm", "\x9f": "apc"}
MAX_CSI = 64
"""A CSI longer than this is not a sequence any terminal sends; it is passed through as text
(its parameters are digits and separators, harmless to show)."""


class TerminalStreamFilter:
    """Feed text with ``feed``; it returns what is safe to write now. ``flush`` at the end."""

    def __init__(self) -> None:
        self._state = "text"
        self._csi = ""
        self.dropped = 0

    def feed(self, text: str) -> str:
        out: list[str] = []
        state = self._state
        for ch in text:
            if state == "text":
                if ch == ESC:
                    state = "esc"
                elif ch == "\x9b":
                    state, self._csi = "csi", ESC + "["
                elif ch in _C1_STRINGS:
                    state = "string"
                    self.dropped += 1
                else:
                    out.append(ch)
            elif state == "esc":
                if ch == "[":
                    state, self._csi = "csi", ESC + "["
                elif ch in _STRING_INTRODUCERS:
                    state = "string"
                    self.dropped += 1
                elif ch == ESC:
                    out.append(ESC)
                else:
                    out.append(ESC + ch)
                    state = "text"
            elif state == "csi":
                self._csi += ch
                if "\x40" <= ch <= "\x7e":
                    if ch in _QUERY_FINALS:
                        self.dropped += 1
                    else:
                        out.append(self._csi)
                    state, self._csi = "text", ""
                elif len(self._csi) > MAX_CSI or not "\x20" <= ch <= "\x3f":
                    out.append(self._csi)
                    state, self._csi = "text", ""
            elif state == "string":  # swallow until ST (ESC \ or 0x9c) or BEL
                if ch in (BEL, "\x9c"):
                    state = "text"
                elif ch == ESC:
                    state = "string_esc"
            elif state == "string_esc":
                state = "text" if ch == "\\" else "string"
        self._state = state
        return "".join(out)

    def flush(self) -> str:
        """What is held back at the end of the stream (an unfinished CSI is dropped)."""
        tail = ESC if self._state == "esc" else ""
        self._state, self._csi = "text", ""
        return tail


def filter_terminal_output(text: str) -> str:
    """The whole of ``text`` filtered at once (for tests and short strings)."""
    stream = TerminalStreamFilter()
    return stream.feed(text) + stream.flush()
