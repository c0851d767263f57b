"""BouncyCastle as an independent AC implementation: compile the Java peer, run it.

Shared by the ``ca`` library tests and the CLI tests (``certgate attr verify``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

JARS = [Path("/usr/share/java") / name for name in ("bcprov.jar", "bcpkix.jar", "bcutil.jar")]
SOURCE = Path(__file__).parent / "ca" / "java" / "AcInterop.java"
CLASSPATH = ":".join(str(jar) for jar in JARS)

MISSING = [str(p) for p in JARS if not p.exists()] + [
    tool for tool in ("java", "javac") if shutil.which(tool) is None
]
SKIP_REASON = f"BouncyCastle peer unavailable: missing {MISSING}"


def compile_peer(out: Path) -> Path:
    subprocess.run(
        ["javac", "-nowarn", "-d", str(out), "-cp", CLASSPATH, str(SOURCE)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def run_peer(classes: Path, *args: str | Path) -> str:
    result = subprocess.run(
        ["java", "-cp", f"{classes}:{CLASSPATH}", "AcInterop", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
