"""Where the asciinema-player files are: installed from npm at setup time, never committed.

``scripts/setup.sh`` installs the pinned ``asciinema-player`` into ``.web-vendor/`` at the
top of the source tree; ``CERTGATE_PLAYER_DIR`` points elsewhere (a packaged install).
"""

from __future__ import annotations

import os
from pathlib import Path

from certgate.errors import CertgateError

PLAYER_DIR_ENV = "CERTGATE_PLAYER_DIR"
PLAYER_FILES = ("asciinema-player.min.js", "asciinema-player.css")
_SOURCE_TREE = Path(__file__).resolve().parents[2]
DEFAULT_PLAYER_DIR = (_SOURCE_TREE / ".web-vendor" / "node_modules" / "asciinema-player"
                      / "dist" / "bundle")


def player_dir() -> Path:
    chosen = os.environ.get(PLAYER_DIR_ENV)
    directory = Path(chosen) if chosen else DEFAULT_PLAYER_DIR
    missing = [name for name in PLAYER_FILES if not (directory / name).is_file()]
    if missing:
        raise CertgateError(
            f"asciinema-player is not installed in {directory} (missing {', '.join(missing)}): "
            f"run scripts/setup.sh, or set {PLAYER_DIR_ENV} to its dist/bundle directory")
    return directory
