"""Property tests of every parser that takes outside input: whatever the bytes, only the
project's own error types come out, and parsing time grows linearly with the input.

Hypothesis examples are kept modest (the suite runs on shared CI machines); the linear-time
checks compare CPU time of one parser on inputs growing 4x and 16x, with generous bounds that
a quadratic parser (16x -> 256x) cannot meet and a linear one always does.
"""

from __future__ import annotations

import contextlib
import json
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import CertificateSigningRequestBuilder, Name, NameAttribute
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca import attribute_cert, authority, keys, ssh_certs
from ca.attribute_cert import AttributeCertificateIssuer
from ca.attributes import AttributeSet
from ca.errors import CAError
from ca.pem import decode_pem
from ca.serials import parse_serial
from certgate.audit.replay import plan, read_cast
from certgate.audit.replay_filter import TerminalStreamFilter, filter_terminal_output
from certgate.consoles.errors import ConsoleURIError
from certgate.consoles.uri import parse_console_uri
from certgate.errors import CertgateError
from certgate.gateway.login import credential_from_blob
from certgate.policy.errors import PolicyError
from certgate.policy.loader import decode_policy, load_policy
from certgate.policy.values import parse_duration

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

NOW = datetime.now(UTC).replace(microsecond=0)
ROOT_KEY = keys.generate_private_key("ed25519")
ROOT = authority.build_root_certificate(ROOT_KEY, "fuzz root")
AA_KEY = keys.generate_private_key("ed25519")
AA = authority.build_attribute_authority_certificate(ROOT, ROOT_KEY, AA_KEY.public_key(), "AA")
USER_KEY = keys.generate_private_key("ed25519")
IDENTITY = authority.build_identity_certificate(
    ROOT, ROOT_KEY, USER_KEY.public_key(), user_name="alice", email=None,
    not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=1))
AC_DER = AttributeCertificateIssuer(AA, AA_KEY, gateway_name="gw").issue(
    IDENTITY, AttributeSet(roles=("operator",)), not_before=NOW, not_after=NOW + timedelta(hours=1))
AC_PEM = attribute_cert.attribute_certificate_pem(AC_DER)
IDENTITY_DER = IDENTITY.public_bytes(serialization.Encoding.DER)
CSR_DER = CertificateSigningRequestBuilder().subject_name(
    Name([NameAttribute(NameOID.COMMON_NAME, "fuzz")])).sign(USER_KEY, None).public_bytes(
    serialization.Encoding.DER)
SSH_KEY_BLOB = ssh_certs.ssh_public_key(USER_KEY.public_key()).public_data
SSH_CERT_BLOB = asyncssh.import_certificate(ssh_certs.build_user_certificate(
    ROOT_KEY, USER_KEY.public_key(), key_id="alice:1", serial=1,
    not_before=NOW, not_after=NOW + timedelta(hours=1))).public_data


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


X509_BLOB = (_ssh_string(b"x509v3-ssh-ed25519") + struct.pack(">I", 1)
             + _ssh_string(IDENTITY_DER) + struct.pack(">I", 0))


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes changed, cut short, or with bytes spliced in."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        choice = draw(st.integers(0, 3))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if choice == 0 and data:
            data[position] = draw(st.integers(0, 255))
        elif choice == 1:
            del data[position:]
        elif choice == 2:
            data[position:position] = draw(st.binary(max_size=16))
        else:
            data[position:position + draw(st.integers(1, 8))] = b""
    return bytes(data)


def outside_bytes(*originals: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=512), *(mutated(o) for o in originals))


# -- no exception but our own ------------------------------------------------------------------


@FUZZ
@given(outside_bytes(AC_DER, AC_PEM))
def test_attribute_certificate_parser_raises_only_ca_errors(data: bytes) -> None:
    with contextlib.suppress(CAError):
        attribute_cert.parse_attribute_certificate(data)


@FUZZ
@given(outside_bytes(CSR_DER, IDENTITY.public_bytes(serialization.Encoding.PEM)))
def test_csr_loader_raises_only_ca_errors(data: bytes) -> None:
    with contextlib.suppress(CAError):
        keys.load_csr(data)


@FUZZ
@given(outside_bytes(
    USER_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo),
    USER_KEY.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                       serialization.PublicFormat.OpenSSH)))
def test_public_key_loader_raises_only_ca_errors(data: bytes) -> None:
    with contextlib.suppress(CAError):
        keys.load_public_key(data)


@FUZZ
@given(outside_bytes(IDENTITY.public_bytes(serialization.Encoding.PEM), AC_PEM))
def test_pem_decoder_raises_only_ca_errors(data: bytes) -> None:
    with contextlib.suppress(CAError):
        decode_pem(data, ("CERTIFICATE", "ATTRIBUTE CERTIFICATE"), "input")


@FUZZ
@given(outside_bytes(SSH_KEY_BLOB, SSH_CERT_BLOB, X509_BLOB))
def test_ssh_key_certificate_and_x509_blobs_raise_only_our_errors(data: bytes) -> None:
    try:
        credential = credential_from_blob(data)
    except (CertgateError, CAError):
        return
    assert credential.kind in {"key", "openssh-cert", "x509"}, credential


URI_SEEDS = ["unix:/run/vm.sock", "unix:/run/vm.sock?telnet", "tcp:host:5901",
             "tcp:[::1]:23?telnet", "exec:virsh console vm", "ssh://root@guest:2222"]


@FUZZ
@given(st.one_of(st.text(max_size=200), st.sampled_from(URI_SEEDS).flatmap(
    lambda seed: st.tuples(st.integers(0, len(seed)), st.text(max_size=8)).map(
        lambda cut: seed[:cut[0]] + cut[1] + seed[cut[0]:]))))
def test_console_uri_parser_raises_only_console_uri_errors(text: str) -> None:
    with contextlib.suppress(ConsoleURIError):
        parse_console_uri(text)


POLICY = """version: 1
rules:
  - name: ops
    effect: allow
    vms: {names: ["vm*"], labels: {env: prod}}
    require: {roles: [operator], clearance: secret}
    privileges: [console.view, console.interact]
    when: {sources: [10.0.0.0/8], time: {days: [mon-fri], hours: "08:00-18:00"}}
    session: {max: 8h, idle: 30m}
"""


@FUZZ
@given(st.one_of(st.text(max_size=300), mutated(POLICY.encode()).map(
    lambda b: b.decode("utf-8", "replace"))))
def test_policy_loader_raises_only_policy_errors(text: str) -> None:
    with contextlib.suppress(PolicyError):
        load_policy(text)


@FUZZ
@given(outside_bytes(POLICY.encode()))
def test_policy_decoder_raises_only_policy_errors(data: bytes) -> None:
    with contextlib.suppress(PolicyError):
        load_policy(decode_policy(data, "fuzz.yaml"))


@FUZZ
@given(st.one_of(st.text(max_size=40),
                 st.from_regex(r"[0-9]{1,30}[dhms]([0-9]{1,30}[dhms])?", fullmatch=True)))
def test_duration_parser_raises_only_value_errors(text: str) -> None:
    """Its documented contract: ValueError, which the policy loader and CLI turn into ours."""
    with contextlib.suppress(ValueError):
        assert parse_duration(text).total_seconds() > 0


@FUZZ
@given(st.one_of(st.text(max_size=80), st.from_regex(r"(0x)?[0-9a-fA-F:]{1,90}",
                                                     fullmatch=True)))
def test_serial_parser_raises_only_ca_errors(text: str) -> None:
    with contextlib.suppress(CAError):
        assert parse_serial(text) >= 0


CAST_EVENT = st.one_of(
    st.tuples(st.floats(allow_nan=True), st.sampled_from(["o", "i", "r", "m"]), st.text()),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=4), max_leaves=10),
)


@FUZZ
@given(st.lists(st.one_of(CAST_EVENT.map(lambda e: json.dumps(e, allow_nan=True)),
                          st.text(max_size=40), st.just("[" * 5000)), max_size=8),
       st.booleans())
def test_asciicast_reader_raises_only_certgate_errors(tmp_path_factory: pytest.TempPathFactory,
                                                      lines: list[str], torn: bool) -> None:
    path = tmp_path_factory.mktemp("cast") / "s.cast"
    header = json.dumps({"version": 2, "width": 80, "height": 24})
    path.write_text("\n".join([header, *lines]) + ("" if torn else "\n"), "utf-8")
    try:
        _header, events = read_cast(path)
        list(plan(events, max_idle=1.0))
    except CertgateError:
        pass


DANGEROUS = ["\x1b]52;c;SGVsbG8=\x07", "\x1b]0;title\x1b\\", "\x1bP+q544e\x1b\\", "\x9d52;c;x\x9c",
             "\x1b[6n", "\x1b[c", "\x1b[21t", "\x1b_apc\x1b\\", "\x9b6n"]


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=20), st.sampled_from(DANGEROUS)), max_size=12),
       st.integers(1, 7))
def test_replay_filter_removes_dangerous_sequences_however_split(parts: list[str],
                                                                 chunk: int) -> None:
    text = "".join(parts)
    stream = TerminalStreamFilter()
    out = "".join(stream.feed(text[i:i + chunk]) for i in range(0, len(text), chunk))
    out += stream.flush()
    assert out == filter_terminal_output(text)
    for sequence in ("\x1b]", "\x9d", "\x1bP", "\x90", "\x1b_", "\x1b[6n", "\x1b[c", "\x1b[21t"):
        assert sequence not in out


def test_replay_filter_keeps_colours_and_cursor_movement() -> None:
    screen = "\x1b[1;31mred\x1b[0m \x1b[2J\x1b[H\x1b[10;5Hplain\r\n"
    assert filter_terminal_output(screen) == screen
    assert filter_terminal_output("a\x1b]52;c;SGVsbG8=\x07b\x1b[6nc") == "abc"


# -- linear time ------------------------------------------------------------------------------


def cpu_seconds(work: Callable[[], object]) -> float:
    """Best of three CPU-time measurements (CPU time ignores other processes' load)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return max(best, 1e-4)


def assert_linear(parse: Callable[[bytes], object], make: Callable[[int], bytes],
                  base: int) -> None:
    """Inputs of n, 4n and 16n: a linear parser takes ~4x and ~16x; a quadratic one 16x and
    256x. The bounds (12x and 64x) leave room for noise and still catch the quadratic."""

    def run(size: int) -> float:
        data = make(size)

        def work() -> None:
            with contextlib.suppress(CAError, CertgateError, ValueError):
                parse(data)

        return cpu_seconds(work)

    t1, t4, t16 = run(base), run(base * 4), run(base * 16)
    assert t4 / t1 < 12 and t16 / t1 < 64, (t1, t4, t16)


def _pem_body(size: int) -> bytes:
    return b"QUJD" * (size // 4)


LINEAR_CASES: dict[str, tuple[Callable[[bytes], object], Callable[[int], bytes], int]] = {
    "PEM decoder (asn1crypto's was quadratic)": (
        lambda d: decode_pem(d, ("ATTRIBUTE CERTIFICATE",), "ac"),
        lambda n: (b"-----BEGIN ATTRIBUTE CERTIFICATE-----\n"
                   + b"\n".join(_pem_body(n)[i:i + 64] for i in range(0, n, 64))
                   + b"\n-----END ATTRIBUTE CERTIFICATE-----\n"),
        16_384),
    "PEM decoder on a block that never ends": (
        lambda d: decode_pem(d, ("CERTIFICATE",), "c"),
        lambda n: b"-----BEGIN CERTIFICATE-----\n" + b"QUJD\n" * (n // 5), 16_384),
    "attribute certificate parser on PEM": (
        attribute_cert.parse_attribute_certificate,
        lambda n: (b"-----BEGIN ATTRIBUTE CERTIFICATE-----\n"
                   + b"\n".join(_pem_body(n)[i:i + 64] for i in range(0, n, 64))
                   + b"\n-----END ATTRIBUTE CERTIFICATE-----\n"),
        16_384),
    "public key loader": (keys.load_public_key, lambda n: b"ssh-ed25519 " + b"A" * n, 4096),
    "policy loader (flow nesting)": (
        lambda d: load_policy(d.decode()), lambda n: b"[" * n + b"]" * n, 16_384),
    "policy loader (nesting inside a quoted string)": (
        lambda d: load_policy(d.decode()), lambda n: b'a: "' + b"[" * n + b'"\n', 16_384),
    "policy loader (many rules)": (
        lambda d: load_policy(d.decode()),
        lambda n: ("version: 1\nrules:\n" + "".join(
            f"  - {{name: r{i}, effect: deny, vms: {{names: [vm{i}]}}}}\n"
            for i in range(n // 50))).encode(),
        2048),
    "policy loader (aliases refused)": (
        lambda d: load_policy(d.decode()),
        lambda n: b"a: &x [1]\nb: [" + b"*x, " * (n // 4) + b"]\n", 4096),
    "console URI parser": (
        lambda d: parse_console_uri(d.decode()), lambda n: b"tcp:" + b"a." * (n // 2) + b":1",
        4096),
    "terminal stream filter": (
        lambda d: filter_terminal_output(d.decode()),
        lambda n: b"\x1b]52;c;" + b"A" * n + b"\x1b[" + b"1;" * (n // 2), 16_384),
}


@pytest.mark.parametrize("name", list(LINEAR_CASES), ids=list(LINEAR_CASES))
def test_parsing_time_grows_linearly_with_the_input(name: str) -> None:
    parse, make, base = LINEAR_CASES[name]
    assert_linear(parse, make, base)


def test_asciicast_reader_time_grows_linearly(tmp_path: Path) -> None:
    def make(n: int) -> bytes:
        header = json.dumps({"version": 2, "width": 80, "height": 24}) + "\n"
        events = "".join(json.dumps([i * 0.01, "o", "x" * 40]) + "\n" for i in range(n // 50))
        return (header + events).encode()

    def parse(data: bytes) -> None:
        path = tmp_path / "linear.cast"
        path.write_bytes(data)
        _header, events = read_cast(path)
        list(plan(events))

    assert_linear(parse, make, 16_384)
