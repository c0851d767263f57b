"""Parsed policies cached on disk, so a process does not parse an unchanged policy again.

``certgate policy check`` is a new process each time, and so is every gateway start: with a
1,000-rule policy, parsing was most of the command's time. The cache is keyed by the SHA-256
of the exact text (and its source name), so a changed policy is a different file and nothing
ever needs invalidating.

The cache is trusted only as far as the installation home is: a file is used only if it is
a regular file owned by this user and writable by nobody else (as the home's keys and
database are). Any problem reading it means the text is parsed again, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path

from ca.files import write_atomically
from certgate.policy.model import Policy
from certgate.policy.serialized import FORMAT, from_data, to_data

MAX_CACHE_BYTES = 64 * 1024 * 1024


def cache_path(cache_dir: Path, text: str, source_name: str) -> Path:
    key = hashlib.sha256(f"{FORMAT}\0{source_name}\0{text}".encode()).hexdigest()
    return cache_dir / f"policy-{key}.json"


def load_policy_cached(text: str, source_name: str, cache_dir: Path | None) -> Policy:
    """``load_policy(text, source_name)``, from the cache in ``cache_dir`` when it is there."""
    cached = None if cache_dir is None else _read(cache_path(cache_dir, text, source_name))
    if cached is not None:
        return cached
    # The YAML parser is imported only to parse: a cache hit (every ``policy check`` after
    # the first) does without it.
    from certgate.policy.loader import load_policy

    policy = load_policy(text, source_name)
    if cache_dir is not None:
        with contextlib.suppress(OSError, ValueError, TypeError):
            _write(cache_path(cache_dir, text, source_name), policy)
    return policy


def _read(path: Path) -> Policy | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid()
                or info.st_mode & 0o022 or info.st_size > MAX_CACHE_BYTES):
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_CACHE_BYTES + 1)
        return from_data(json.loads(data))
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return None
    finally:
        os.close(fd)


def _write(path: Path, policy: Policy) -> None:
    text = json.dumps(to_data(policy), separators=(",", ":"))
    # Only a cache that reads back as the very same policy (locations too) is kept.
    again = from_data(json.loads(text))
    if again != policy or [r.location for r in again.rules] != [
            r.location for r in policy.rules]:
        raise ValueError("policy does not survive serialization")
    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_atomically(path, text.encode(), 0o600)
