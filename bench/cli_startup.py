"""Benchmark: how long a person waits for the ``certgate`` command.

    python bench/cli_startup.py [--runs 7] [--rules 1000] [--before-tree DIR] [--postgres]

Each figure is the median wall time of ``--runs`` fresh processes (CPU time of the child
beside it, which load from other users of the machine disturbs less), the systems
alternating run by run, each in two ways of loading Python code:

- **bytecode cached**: compiled modules kept between runs (``PYTHONPYCACHEPREFIX`` in the
  temporary directory, filled by one run first), as an installed package runs (pip writes
  bytecode when it installs a wheel);
- **no bytecode written**: ``PYTHONDONTWRITEBYTECODE=1``, as this machine's environment sets
  it: whatever bytecode lies next to the sources is used, and a module without any is
  compiled on every run (site-packages have it; a checkout has it only once
  scripts/setup.sh compiled it, which the ``--before-tree`` checkout is not).

The systems:

- ``certgate --version``, against two baselines measured in the same run: the bare
  interpreter (``python -c pass``, the floor) and importing every command module, which is
  what every ``certgate`` invocation did before commands were loaded on demand;
- two more baselines for ``policy check``: importing SQLAlchemy's ORM alone (the floor of
  any command that reads the store through it), and importing every module ``policy check``
  imports without running it (the rest of the command is its work);
- ``certgate policy check USER VM`` on an installation (SQLite) holding a generated
  ``--rules``-rule policy (bench/policy_decide.py's generator), with the parsed-policy cache
  warm (every run after the first) and cold (cache directory emptied before each run), and,
  in-process, the parse of that policy by the pure-Python YAML parser (the parse the command
  paid before libyaml and the cache);
- with ``--before-tree DIR``, the same warm ``policy check`` run from another checkout
  (``PYTHONPATH=DIR``) on the same installation, in the same rounds: a same-run before/after.

The installation is made with the CLI itself in a temporary directory, on SQLite, or with
``--postgres`` on a throwaway PostgreSQL cluster (tests/pg.py, which runs with fsync=off).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from policy_decide import policy_text  # noqa: E402

PASSPHRASE = "bench passphrase"


def loading_modes(tmp: Path, env: dict[str, str]) -> dict[str, dict[str, str]]:
    """The environments of the two ways of loading code (see the module docstring)."""
    cached = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    source = {k: v for k, v in env.items() if k != "PYTHONPYCACHEPREFIX"}
    source["PYTHONDONTWRITEBYTECODE"] = "1"
    return {"bytecode cached": cached, "no bytecode written": source}


def run(args: list[str], env: dict[str, str], check: bool = True) -> tuple[float, float, str]:
    """Wall seconds, child CPU seconds, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # A neutral working directory: ``python -m`` puts it first on sys.path, where a checkout
    # would shadow the one ``--before-tree`` puts on PYTHONPATH.
    result = subprocess.run(args, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if check and result.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(args)}: exit {result.returncode}: {result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result.stdout


def certgate(*args: str) -> list[str]:
    return [sys.executable, "-m", "certgate", *args]


def setup(home: Path, rules: int, env: dict[str, str], database_url: str | None) -> None:
    rng = random.Random(8)
    text = policy_text(rules, 10_000, rng)
    policy = home.parent / "policy.yaml"
    policy.write_text(text)
    init = ["init", "--gateway-name", "gw.bench"]
    if database_url:
        init += ["--database-url", database_url]
    subprocess.run(certgate(*init), env=env, check=True, capture_output=True)
    key = home.parent / "alice_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    for command in (
        ("user", "add", "alice", "--pubkey", f"{key}.pub"),
        ("vm", "add", "t07-web-00007", "--console", "unix:/tmp/cgbench-none.sock",
         "--label", "env=prod", "--label", "team=t07", "--label", "tier=1"),
        ("policy", "apply", str(policy)),
        ("attr", "grant", "alice", "role=t07-ops", "role=t07-web", "clearance=secret",
         "grant=oncall"),
    ):
        subprocess.run(certgate(*command), env=env, check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--before-tree", type=Path, default=None, metavar="DIR",
                        help="also run policy check from this checkout (same rounds)")
    parser.add_argument("--postgres", action="store_true",
                        help="the installation on a throwaway PostgreSQL cluster")
    options = parser.parse_args()
    cluster = None
    if options.postgres:
        sys.path.insert(0, str(ROOT / "tests"))
        from pg import start_cluster

        cluster = start_cluster()
    try:
        return measure(options, cluster.create_database() if cluster else None)
    finally:
        if cluster is not None:
            cluster.stop()


def measure(options: argparse.Namespace, database_url: str | None) -> int:
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    samples: dict[str, list[tuple[float, float]]] = {}

    def sample(name: str, args: list[str], env: dict[str, str]) -> str:
        wall, cpu, out = run(args, env)
        samples.setdefault(name, []).append((wall, cpu))
        return out

    with tempfile.TemporaryDirectory(prefix="cgcli-") as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "CERTGATE_HOME": str(home), "CERTGATE_CA_PASSPHRASE": PASSPHRASE}
        setup(home, options.rules, env, database_url)
        check = certgate("policy", "check", "alice", "t07-web-00007", "--from", "10.1.2.3")
        out = run(check, env)[2]  # warms the policy cache
        modes = loading_modes(Path(tmp), env)
        systems: list[tuple[str, list[str], bool]] = [
            ("python -c pass (floor)", [sys.executable, "-c", "pass"], False),
            ("import every command module (before)",
             [sys.executable, "-c", "from certgate.cli.main import register_all; "
                                    "register_all()"], False),
            ("import sqlalchemy.orm (floor of a command that reads the store)",
             [sys.executable, "-c", "import sqlalchemy.orm"], False),
            ("import what policy check imports, no work",
             [sys.executable, "-c", "import certgate.cli.main, certgate.cli.policy_commands, "
                                    "certgate.installation, certgate.access, "
                                    "certgate.store.direct, "
                                    + ("psycopg" if database_url else "sqlite3")], False),
            ("certgate --version", certgate("--version"), False),
            ("certgate policy check, policy cache warm", check, False),
            ("certgate policy check, policy cache cold", check, True),
        ]
        before_env: dict[str, str] = {}
        if options.before_tree is not None:
            before = str(options.before_tree.resolve())
            before_env = {"PYTHONPATH": before}
            systems.append(("certgate policy check, warm, --before-tree", check, False))
            run(check, {**env, **before_env})  # warms its policy cache (another format)
        runs = [(f"{name} [{mode}]", args, cold, {**mode_env, **(
            before_env if name.endswith("--before-tree") else {})})
            for name, args, cold in systems for mode, mode_env in modes.items()]
        for _, args, _, run_env in runs:  # fills the bytecode cache; warms the policy cache
            run(args, run_env)
        for round_ in range(options.runs):
            shift = round_ % len(runs)
            for name, args, cold, run_env in runs[shift:] + runs[:shift]:
                if cold:
                    shutil.rmtree(home / "cache", ignore_errors=True)
                sample(name, args, run_env)  # a cold run fills the cache again
                if cold and before_env:  # and the other checkout's entry (its own format)
                    run(check, {**env, **before_env})
        import certgate.policy.yamlnodes as nodes
        from certgate.policy.loader import load_policy

        text = (Path(tmp) / "policy.yaml").read_text()
        fast_loader = nodes._FAST_LOADER
        parse: dict[str, float] = {}
        for label, loader in (("libyaml", fast_loader), ("pure Python", None)):
            nodes._FAST_LOADER = loader
            start = time.thread_time()
            load_policy(text, "policy.yaml")
            parse[label] = time.thread_time() - start
        nodes._FAST_LOADER = fast_loader
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{options.runs} runs each, alternating; {os.cpu_count()} CPUs; "
          f"Python {sys.version.split()[0]}; load average {load_start} at the start, "
          f"{load_end} at the end; policy of {options.rules} rules; "
          f"{'PostgreSQL (fsync=off)' if database_url else 'SQLite'}")
    print()
    print("| command | wall, median | CPU, median | wall samples (s) |")
    print("|---|---:|---:|---|")
    for name, values in samples.items():
        walls, cpus = [w for w, _ in values], [c for _, c in values]
        print(f"| {name} | {statistics.median(walls):.3f} s | {statistics.median(cpus):.3f} s "
              f"| {', '.join(f'{w:.2f}' for w in walls)} |")
    print()
    print(f"parsing the {options.rules}-rule policy in-process (CPU): libyaml "
          f"{parse['libyaml']:.3f} s, pure-Python parser {parse['pure Python']:.3f} s")
    print(f"policy check said: {out.strip().splitlines()[-1] if out.strip() else '(nothing)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
