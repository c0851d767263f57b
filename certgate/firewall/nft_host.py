"""Loading certgate's nftables table into this host's kernel, and reading it back.

Every change goes through one ``nft -f -`` transaction, so the kernel either takes all of it
or keeps what it had. A re-apply compares the loaded table's hash (the comment of its empty
``applied`` set) with the one wanted: equal means nothing to do; a body cached under
the loaded hash lets the change be a small transaction of just the differences; otherwise the
table is replaced whole (still atomically).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ca.files import write_atomically
from certgate.firewall.errors import FirewallError
from certgate.secgroups.nftables import (
    HASH_PREFIX,
    STATE_SET,
    TABLE,
    NftRuleset,
    incremental_script,
)

_HASH = re.compile(re.escape(HASH_PREFIX) + r"([0-9a-f]{64})")
NFT_TIMEOUT = 60.0
KEEP_CACHED = 4
MAX_LISTING = 256 * 1024 * 1024


@dataclass(frozen=True)
class ApplyOutcome:
    """How the wanted ruleset got loaded: ``unchanged``, ``incremental`` or ``full``."""

    mode: str
    seconds: float
    previous_sha256: str | None


class NftHost:
    """``nft`` on this host (or, with ``command_prefix``, e.g. inside a network namespace).

    ``cache_dir`` keeps the bodies of recently applied rulesets, named by their hash.
    """

    def __init__(self, cache_dir: Path | None, *, command_prefix: Sequence[str] = (),
                 nft: str = "nft") -> None:
        self.cache_dir = cache_dir
        self.command = [*command_prefix, nft]

    def _run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([*self.command, *args], input=stdin, text=True,
                                  capture_output=True, timeout=NFT_TIMEOUT, check=False)
        except FileNotFoundError as exc:
            raise FirewallError(
                f"cannot run {self.command[-1]}: not installed (apt-get install nftables)"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise FirewallError(f"nft did not answer within {NFT_TIMEOUT:.0f} s") from exc

    def loaded_sha256(self) -> str | None:
        """The hash of the loaded table, or None when certgate's table is not loaded."""
        done = self._run(["list", "set", *TABLE.split(), STATE_SET])
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return None
            raise FirewallError(f"cannot read the loaded ruleset: {_first_error(done.stderr)}")
        match = _HASH.search(done.stdout)
        return match.group(1) if match else None

    def loaded_table(self) -> str | None:
        """``nft list table`` of certgate's table, or None when it is not loaded."""
        done = self._run(["list", "table", *TABLE.split()])
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return None
            raise FirewallError(f"cannot read the loaded ruleset: {_first_error(done.stderr)}")
        return done.stdout[:MAX_LISTING]

    def check(self, ruleset: NftRuleset) -> None:
        """Let ``nft`` parse and check the full transaction without loading it."""
        done = self._run(["-c", "-f", "-"], ruleset.script)
        if done.returncode != 0:
            raise FirewallError(f"nft refused the ruleset: {_first_error(done.stderr)}")

    def apply(self, ruleset: NftRuleset, *, full: bool = False) -> ApplyOutcome:
        """Load ``ruleset``; on any failure the previously loaded table stays as it was."""
        started = time.perf_counter()
        previous = self.loaded_sha256()
        if previous == ruleset.sha256 and not full:
            return ApplyOutcome("unchanged", time.perf_counter() - started, previous)
        script, mode = ruleset.script, "full"
        old_body = self._cached(previous) if previous and not full else None
        if old_body is not None:
            small = incremental_script(old_body, ruleset)
            if small is not None:
                script, mode = small, "incremental"
        done = self._run(["-f", "-"], script)
        if done.returncode != 0 and mode == "incremental":
            # The loaded table is not what the cache says (edited by hand?): replace it whole.
            script, mode = ruleset.script, "full"
            done = self._run(["-f", "-"], script)
        if done.returncode != 0:
            raise FirewallError(f"nft refused the ruleset: {_first_error(done.stderr)}")
        self._remember(ruleset)
        return ApplyOutcome(mode, time.perf_counter() - started, previous)

    def remove(self) -> bool:
        """Delete certgate's table (True if there was one). Nothing else is touched."""
        done = self._run(["delete", "table", *TABLE.split()])
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return False
            raise FirewallError(f"cannot delete the table: {_first_error(done.stderr)}")
        return True

    # -- the cache of applied bodies ----------------------------------------------------------

    def _cached(self, sha256: str) -> str | None:
        if self.cache_dir is None:
            return None
        try:
            return (self.cache_dir / f"nft-{sha256}.nft").read_text()
        except OSError:
            return None

    def _remember(self, ruleset: NftRuleset) -> None:
        if self.cache_dir is None:
            return
        try:
            self.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomically(self.cache_dir / f"nft-{ruleset.sha256}.nft",
                             ruleset.body.encode(), 0o600)
            cached = sorted(self.cache_dir.glob("nft-*.nft"), key=lambda p: p.stat().st_mtime)
            for old in cached[:-KEEP_CACHED]:
                old.unlink(missing_ok=True)
        except OSError:
            pass  # only the next re-apply's speed depends on the cache


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.strip():
            return " ".join(line.split())[:300]
    return "no message"
