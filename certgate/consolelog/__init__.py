"""Per-VM console logs: everything a console prints, kept whether or not anyone watches.

``writer`` appends asciicast v2 segments and rotates them; ``anchoring`` ties each sealed
segment to the audit chain; ``reader`` prints and searches them; ``settings`` reads the
``[console_log]`` table of certgate.toml. See docs/consoles.md.
"""
