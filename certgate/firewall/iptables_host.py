"""Loading certgate's chains with ``iptables-restore``/``ip6tables-restore`` and reading them.

Each family's change is one ``--noflush`` restore (one commit per family, other chains left
alone). Both scripts are first checked with ``--test``; if the IPv6 commit still fails after
the IPv4 one went in, the IPv4 chains are restored to what was loaded before.
"""

from __future__ import annotations

import difflib
import hashlib
import subprocess
import time
from collections.abc import Sequence

from certgate.firewall.errors import FirewallError
from certgate.firewall.nft_host import ApplyOutcome
from certgate.secgroups import iptables as ipt
from certgate.secgroups.model import Fleet

TIMEOUT = 60.0
TOOLS = {4: ("iptables-save", "iptables-restore"), 6: ("ip6tables-save", "ip6tables-restore")}


class IptablesBackend:
    name = "iptables"

    def __init__(self, command_prefix: Sequence[str] = ()) -> None:
        self.prefix = list(command_prefix)
        self._rendered: dict[str, ipt.IptablesRuleset] = {}

    def _run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([*self.prefix, *args], input=stdin, text=True,
                                  capture_output=True, timeout=TIMEOUT, check=False)
        except FileNotFoundError as exc:
            raise FirewallError(
                f"cannot run {args[0]}: not installed (apt-get install iptables)") from exc
        except subprocess.TimeoutExpired as exc:
            raise FirewallError(f"{args[0]} did not answer within {TIMEOUT:.0f} s") from exc

    def render(self, fleet: Fleet) -> tuple[str, str]:
        ruleset = ipt.render_iptables(fleet)
        self._rendered[ruleset.sha256] = ruleset
        return ruleset.text, ruleset.sha256

    def loaded(self) -> dict[int, dict[str, ipt.LoadedTable]]:
        found: dict[int, dict[str, ipt.LoadedTable]] = {}
        for version, (save, _) in TOOLS.items():
            done = self._run([save])
            if done.returncode != 0:
                raise FirewallError(f"cannot read the loaded rules ({save}): "
                                    f"{_first_line(done.stderr)}")
            found[version] = ipt.parse_save(done.stdout)
        return found

    def diff(self, text: str) -> list[str]:
        before = ipt.canonical_text(ipt.loaded_chains(self.loaded()))
        return list(difflib.unified_diff(before.splitlines(), text.splitlines(), "loaded",
                                         "certgate", lineterm="", n=2))

    def apply(self, text: str, sha256: str, *, full: bool) -> ApplyOutcome:
        started = time.perf_counter()
        ruleset = self._rendered.get(sha256)
        if ruleset is None or ruleset.text != text:
            raise FirewallError("internal: apply a ruleset rendered by this backend")
        loaded = self.loaded()
        previous = ipt.canonical_text(ipt.loaded_chains(loaded))
        previous_sha = hashlib.sha256(previous.encode()).hexdigest()
        if previous == ruleset.text and not full:
            return ApplyOutcome("unchanged", time.perf_counter() - started, previous_sha)
        self._commit(ruleset.chains, loaded, ipt.loaded_chains(loaded))
        return ApplyOutcome("full", time.perf_counter() - started, previous_sha)

    def _commit(self, wanted: ipt.Chains, loaded: dict[int, dict[str, ipt.LoadedTable]],
                before: ipt.Chains) -> None:
        scripts = {v: ipt.restore_script(wanted[v], loaded[v]) for v in ipt.FAMILIES}
        for version, script in scripts.items():
            done = self._run([TOOLS[version][1], "--noflush", "--test"], script)
            if done.returncode != 0:
                raise FirewallError(f"{TOOLS[version][1]} refused the rules: "
                                    f"{_first_line(done.stderr)}")
        committed: list[int] = []
        for version, script in scripts.items():
            done = self._run([TOOLS[version][1], "--noflush"], script)
            if done.returncode != 0:
                self._roll_back(committed, before)
                raise FirewallError(f"{TOOLS[version][1]} refused the rules: "
                                    f"{_first_line(done.stderr)}")
            committed.append(version)

    def _roll_back(self, committed: list[int], before: ipt.Chains) -> None:
        now = self.loaded()
        for version in committed:
            self._run([TOOLS[version][1], "--noflush"],
                      ipt.restore_script(before[version], now[version]))

    def unload(self) -> bool:
        loaded = self.loaded()
        if not any(t.chains for tables in loaded.values() for t in tables.values()):
            return False
        empty: ipt.Chains = {v: {t: {} for t in ipt.TABLES} for v in ipt.FAMILIES}
        self._commit(empty, loaded, ipt.loaded_chains(loaded))
        return True


def _first_line(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.strip():
            return " ".join(line.split())[:300]
    return "no message"
