"""The installation directory ("home"): its layout, its config file and its key files.

One home is one certgate installation: a CA, an Attribute Authority, the gateway's keys, the
config and (by default) an SQLite database. Several gateway replicas share state by pointing
``database_url`` at the same PostgreSQL database.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certgate.errors import HomeError
from certgate.limits import Limits

HOME_ENV = "CERTGATE_HOME"
PASSPHRASE_ENV = "CERTGATE_CA_PASSPHRASE"
PASSPHRASE_FILE_ENV = "CERTGATE_CA_PASSPHRASE_FILE"
"""A file holding the passphrase, e.g. a systemd credential (``$CREDENTIALS_DIRECTORY``)."""
MAX_PASSPHRASE_FILE = 4096
DATABASE_URL_ENV = "CERTGATE_DATABASE_URL"
DATABASE_PASSWORD_ENV = "CERTGATE_DATABASE_PASSWORD"
MAX_CONFIG_BYTES = 1 << 16
MAX_PASSWORD_FILE_BYTES = 4096
CONFIG_NAME = "certgate.toml"


@dataclass(frozen=True)
class HomeConfig:
    gateway_name: str
    database_url: str | None
    listen_host: str
    listen_port: int
    encrypted_keys: bool
    crl_url: str | None = None
    web_url: str | None = None
    """Where reviewers reach ``certgate web`` (sign-in links printed by the gateway)."""
    database_password_file: str | None = None
    limits: Limits = field(default_factory=Limits)

    def to_toml(self) -> str:
        lines = [
            "# certgate installation settings",
            "[certgate]",
            f"gateway_name = {_toml_str(self.gateway_name)}",
            f"listen_host = {_toml_str(self.listen_host)}",
            f"listen_port = {self.listen_port}",
            f"encrypted_keys = {'true' if self.encrypted_keys else 'false'}",
        ]
        if self.database_url:
            lines.append(f"database_url = {_toml_str(self.database_url)}")
        else:
            lines.append(
                '# database_url = "postgresql+psycopg://user@host/db"  (default: SQLite here)'
            )
        if self.crl_url:
            lines.append(f"crl_url = {_toml_str(self.crl_url)}")
        if self.web_url:
            lines.append(f"web_url = {_toml_str(self.web_url)}")
        if self.database_password_file:
            lines.append(f"database_password_file = {_toml_str(self.database_password_file)}")
        lines += ["", "# Optional limits (docs/hardening.md), e.g.:", "# [limits]",
                  '# max_identity_lifetime = "825d"', "# max_auth_tries = 6"]
        return "\n".join(lines) + "\n"

    @property
    def holds_password(self) -> bool:
        """True when ``database_url`` carries a password (the file must then be 0600)."""
        return bool(self.database_url and make_url_password(self.database_url))

    @classmethod
    def from_toml(cls, text: str, source: str) -> HomeConfig:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise HomeError(f"{source}: {exc}") from exc
        data: dict[str, Any] = document.get("certgate", {})
        limits_table = document.get("limits", {})
        if not isinstance(data, dict) or not isinstance(limits_table, dict):
            raise HomeError(f"{source}: [certgate] and [limits] must be tables")
        known = {"gateway_name", "database_url", "listen_host", "listen_port",
                 "encrypted_keys", "crl_url", "database_password_file", "web_url"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HomeError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        try:
            return cls(
                gateway_name=str(data["gateway_name"]),
                database_url=data.get("database_url"),
                listen_host=str(data.get("listen_host", "127.0.0.1")),
                listen_port=int(data.get("listen_port", 2222)),
                encrypted_keys=bool(data.get("encrypted_keys", True)),
                crl_url=data.get("crl_url"),
                web_url=data.get("web_url"),
                database_password_file=data.get("database_password_file"),
                limits=Limits.from_table(limits_table, source),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HomeError(f"{source}: missing or invalid setting {exc}") from exc


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class Home:
    """Paths inside one installation directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()

    @classmethod
    def locate(cls, option: str | None) -> Home:
        chosen = option or os.environ.get(HOME_ENV)
        return cls(Path(chosen) if chosen else Path.home() / ".certgate")

    # layout
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def sqlite_path(self) -> Path:
        return self.root / "certgate.db"

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def gateway_dir(self) -> Path:
        return self.root / "gateway"

    @property
    def recordings_dir(self) -> Path:
        return self.root / "recordings"

    @property
    def console_logs_dir(self) -> Path:
        return self.root / "console-logs"

    @property
    def cache_dir(self) -> Path:
        """Derived data that can always be rebuilt (parsed policies); safe to delete."""
        return self.root / "cache"

    root_cert = property(lambda self: self.ca_dir / "root.pem")
    root_key = property(lambda self: self.ca_dir / "root.key")
    aa_cert = property(lambda self: self.ca_dir / "aa.pem")
    aa_key = property(lambda self: self.ca_dir / "aa.key")
    ssh_ca_key = property(lambda self: self.ca_dir / "ssh-ca.key")
    ssh_ca_pub = property(lambda self: self.ca_dir / "ssh-ca.pub")
    host_key = property(lambda self: self.gateway_dir / "host.key")
    host_cert = property(lambda self: self.gateway_dir / "host.pem")
    host_ssh_cert = property(lambda self: self.gateway_dir / "host-cert.pub")
    audit_key = property(lambda self: self.gateway_dir / "audit.key")
    audit_cert = property(lambda self: self.gateway_dir / "audit.pem")
    upstream_key = property(lambda self: self.gateway_dir / "upstream.key")
    upstream_known_hosts = property(lambda self: self.gateway_dir / "upstream_known_hosts")

    def exists(self) -> bool:
        return self.config_path.exists()

    def require(self) -> None:
        if not self.exists():
            raise HomeError(
                f"no certgate installation at {self.root}: run `certgate init` "
                f"(or pass --home / set {HOME_ENV})"
            )

    def config(self) -> HomeConfig:
        self.require()
        path = self.config_path
        try:
            with path.open("rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                data = handle.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise HomeError(f"cannot read {path}: {exc.strerror}") from exc
        if len(data) > MAX_CONFIG_BYTES:
            raise HomeError(f"{path} is too large (more than {MAX_CONFIG_BYTES} bytes)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise HomeError(f"{path} is not UTF-8 text") from None
        config = HomeConfig.from_toml(text, str(path))
        if config.holds_password and stat.S_IMODE(mode) & 0o077:
            raise HomeError(f"refusing {path}: it holds a database password and is readable "
                            "by group or others (chmod 600, or move the password to "
                            f"database_password_file or {DATABASE_PASSWORD_ENV})")
        return config

    def database_url(self) -> str:
        url, password = self.database_location()
        return with_password(url, password) if password else url

    def database_location(self) -> tuple[str, str | None]:
        """The database URL as configured and the password that goes with it, if it is kept
        apart (environment or password file); ``database_url`` puts the two together."""
        override = os.environ.get(DATABASE_URL_ENV)
        config = None if override else self.config()
        url = override or (config.database_url if config else None)
        if not url:
            return f"sqlite:///{self.sqlite_path}", None
        password = os.environ.get(DATABASE_PASSWORD_ENV)
        if password is None and config is not None and config.database_password_file:
            password = read_password_file(self.root / config.database_password_file)
        return url, password or None


_URL_SCHEME = re.compile(r"[\w+]+://")
_USERINFO_END = re.compile(r"[:/]")


def _may_hold_password(url: str) -> bool:
    """False only when SQLAlchemy's URL grammar finds no password in ``url``: its password
    follows the first ``:`` after ``scheme://`` (before any ``/``) and ends at an ``@``.
    Lets the common URL (``user@host:port/db``) be judged without importing SQLAlchemy."""
    scheme = _URL_SCHEME.match(url)
    if scheme is None:
        return False  # SQLAlchemy cannot parse it: no password either
    rest = url[scheme.end():]
    stop = _USERINFO_END.search(rest)
    return stop is not None and stop.group() == ":" and "@" in rest[stop.end():]


def make_url_password(url: str) -> str | None:
    if not _may_hold_password(url):
        return None
    from sqlalchemy.engine import make_url  # only URLs with a password need it
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url).password
        return None if password is None else str(password)
    except ArgumentError:
        return None


def with_password(url: str, password: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).set(password=password).render_as_string(hide_password=False)
    except ArgumentError as exc:
        raise HomeError(f"invalid database_url: {exc}") from None


def read_password_file(path: Path) -> str:
    """The database password from its own file: 0600, one line, bounded."""
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as exc:
        raise HomeError(f"cannot read the database password file {path}: "
                        f"{exc.strerror}") from exc
    if stat.S_IMODE(mode) & 0o077:
        raise HomeError(f"refusing {path}: readable by group or others (chmod 600)")
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        raise HomeError(f"the database password file {path} is too large")
    try:
        password = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise HomeError(f"the database password file {path} is not UTF-8") from None
    if not password or "\n" in password:
        raise HomeError(f"the database password file {path} must hold one line")
    return password


def _passphrase_file(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PASSPHRASE_FILE + 1)
    except OSError as exc:
        raise HomeError(f"{PASSPHRASE_FILE_ENV}: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_PASSPHRASE_FILE:
        raise HomeError(f"{PASSPHRASE_FILE_ENV}: {path} is larger than a passphrase")
    value = data.rstrip(b"\r\n")
    if not value:
        raise HomeError(f"{PASSPHRASE_FILE_ENV}: {path} is empty")
    return value


def read_passphrase(*, confirm: bool = False, prompt: str = "CA passphrase") -> bytes:
    """The installation passphrase: from the environment or a file it names, else asked on
    the terminal."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value.encode("utf-8")
    path = os.environ.get(PASSPHRASE_FILE_ENV)
    if path:
        return _passphrase_file(Path(path))
    if not sys.stdin.isatty():
        raise HomeError(f"the keys are encrypted: set {PASSPHRASE_ENV} or run on a terminal")
    import click  # the only place the core asks a person something

    entered: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    if not entered:
        raise HomeError("an empty passphrase is not allowed (use --no-passphrase explicitly)")
    return entered.encode("utf-8")
