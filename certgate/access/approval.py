"""Approving attribute certificates: pure, given holdings, trust anchors, a VM and a time.

The checks that cannot change while an AC lives (its signature by the AA, the AA's own
standing, the issuer, the holder binding, critical extensions, gateway targeting) are done
once and remembered in a ``VerifiedACs`` cache until the AC (or the AA certificate) expires;
revocation, validity and VM targeting are judged afresh on every decision, from the snapshot
the caller read. Reasons are checked in a fixed order so the explanation is the one that
matters most: revoked, holder revoked, expired, not yet valid, invalid, limited to other VMs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from ca import attribute_cert
from ca.attributes import AttributeSet, ClearanceLevel
from ca.errors import CAError, VerificationError
from ca.serials import format_serial
from ca.timeutil import format_time
from ca.verify import verify_attribute_certificate
from certgate.access.model import Approval, Rejection, RejectionReason
from certgate.store.records import IssuedCertificate

MAX_CACHED = 100_000


@dataclass(frozen=True)
class TrustAnchors:
    """What an AC must chain to: our root, our Attribute Authority, this gateway's name."""

    root: x509.Certificate
    aa: x509.Certificate
    gateway_name: str


@dataclass(frozen=True)
class VerifiedAC:
    ac: attribute_cert.AttributeCertificate
    holder_serial: str
    trusted_until: datetime


class VerifiedACs:
    """Validated ACs by serial, each kept until it (or the AA certificate) expires.

    Shared by the gateway's worker threads: a lock guards the dict. Entries are evicted when
    they expire or when a decision sees the AC revoked.
    """

    def __init__(self, limit: int = MAX_CACHED) -> None:
        self._entries: dict[str, VerifiedAC] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def get(self, serial: str, der: bytes, at: datetime) -> VerifiedAC | None:
        with self._lock:
            entry = self._entries.get(serial)
            if entry is None:
                return None
            if at >= entry.trusted_until or entry.ac.der != der:
                del self._entries[serial]
                return None
            return entry

    def put(self, serial: str, entry: VerifiedAC) -> None:
        with self._lock:
            if len(self._entries) >= self._limit:
                self._entries.clear()  # rare: far more live ACs than any fleet holds
            self._entries[serial] = entry

    def discard(self, serial: str) -> None:
        with self._lock:
            self._entries.pop(serial, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def merge_attributes(sets: Iterable[AttributeSet]) -> AttributeSet:
    """Union of roles, groups and grants; the highest clearance held."""
    sets = list(sets)
    clearances = [s.clearance for s in sets if s.clearance is not None]
    clearance: ClearanceLevel | None = max(clearances) if clearances else None
    return AttributeSet(
        roles=tuple(sorted({r for s in sets for r in s.roles})),
        groups=tuple(sorted({g for s in sets for g in s.groups})),
        clearance=clearance,
        grants=tuple(sorted({g for s in sets for g in s.grants})),
    )


def _revocation_note(reason: str | None) -> str:
    return f" ({reason})" if reason else ""


def judge_attribute_certificate(
    ac: attribute_cert.AttributeCertificate,
    *,
    holder_cert: x509.Certificate,
    anchors: TrustAnchors,
    vm: str | None,
    at: datetime,
    revoked_reason: str | None = None,
    revoked: bool = False,
    holder_revoked_reason: str | None = None,
    holder_revoked: bool = False,
    cache: VerifiedACs | None = None,
) -> AttributeSet | Rejection:
    """The attributes one AC grants at ``vm`` (None: the gateway itself) at ``at``, or why not."""
    serial = format_serial(ac.serial)
    label = f"AC {serial}"
    if revoked:
        if cache is not None:
            cache.discard(serial)
        return Rejection(serial, RejectionReason.REVOKED,
                         f"{label} was revoked{_revocation_note(revoked_reason)}")
    holder_serial = format_serial(holder_cert.serial_number)
    if holder_revoked:
        return Rejection(serial, RejectionReason.HOLDER_REVOKED,
                         f"{label}: its holder's identity certificate {holder_serial} was "
                         f"revoked{_revocation_note(holder_revoked_reason)}")
    if at >= ac.not_after:
        return Rejection(serial, RejectionReason.EXPIRED,
                         f"{label} expired at {format_time(ac.not_after)}")
    if at < ac.not_before:
        return Rejection(serial, RejectionReason.NOT_YET_VALID,
                         f"{label} is not valid before {format_time(ac.not_before)}")
    verified = cache.get(serial, ac.der, at) if cache is not None else None
    if verified is None or verified.holder_serial != holder_serial:
        try:
            verify_attribute_certificate(
                ac, aa_cert=anchors.aa, root_cert=anchors.root, holder_cert=holder_cert,
                at=at, gateway_name=anchors.gateway_name, vm=None,
            )
        except (VerificationError, CAError) as exc:
            return Rejection(serial, RejectionReason.INVALID, f"{label}: {exc}")
        if cache is not None:
            cache.put(serial, VerifiedAC(ac, holder_serial,
                                         min(ac.not_after, anchors.aa.not_valid_after_utc)))
    if vm is not None and ac.target_vms and vm not in ac.target_vms:
        return Rejection(serial, RejectionReason.WRONG_VM,
                         f"{label} is limited to {', '.join(ac.target_vms)}, not {vm}")
    return ac.attributes


class ParsedACs:
    """Parsed ACs by serial (parsing costs more than the signature check)."""

    def __init__(self, limit: int = MAX_CACHED) -> None:
        self._entries: dict[str, attribute_cert.AttributeCertificate] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def parse(self, row: IssuedCertificate) -> attribute_cert.AttributeCertificate:
        with self._lock:
            parsed = self._entries.get(row.serial)
        if parsed is not None and parsed.der == row.der:
            return parsed
        parsed = attribute_cert.parse_attribute_certificate(row.der)
        with self._lock:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            self._entries[row.serial] = parsed
        return parsed


def approve_attribute_certificates(
    holder: IssuedCertificate,
    holder_cert: x509.Certificate,
    holdings: Sequence[IssuedCertificate],
    *,
    anchors: TrustAnchors,
    vm: str | None,
    at: datetime,
    cache: VerifiedACs | None = None,
    parsed: ParsedACs | None = None,
) -> Approval:
    """Approve a holder's ACs (rows as stored) for ``vm`` at ``at``.

    Approved attributes are merged; every AC set aside is listed with its reason. The result
    says when it can next change by time alone, so callers can schedule a re-check.
    """
    parsed = parsed or ParsedACs()
    approved: list[AttributeSet] = []
    serials: list[str] = []
    rejected: list[Rejection] = []
    boundaries: list[datetime] = []
    for row in holdings:
        try:
            ac = parsed.parse(row)
        except CAError as exc:
            rejected.append(Rejection(row.serial, RejectionReason.INVALID,
                                      f"AC {row.serial}: {exc}"))
            continue
        outcome = judge_attribute_certificate(
            ac, holder_cert=holder_cert, anchors=anchors, vm=vm, at=at,
            revoked=row.status == "revoked", revoked_reason=row.revocation_reason,
            holder_revoked=holder.status == "revoked",
            holder_revoked_reason=holder.revocation_reason, cache=cache,
        )
        if isinstance(outcome, Rejection):
            rejected.append(outcome)
            if outcome.reason is RejectionReason.NOT_YET_VALID:
                boundaries.append(ac.not_before)
            continue
        approved.append(outcome)
        serials.append(row.serial)
        boundaries.append(ac.not_after)
    return Approval(merge_attributes(approved), tuple(serials), tuple(rejected),
                    min(boundaries) if boundaries else None)


def attributes_by_vm(
    holder: IssuedCertificate,
    holder_cert: x509.Certificate,
    holdings: Sequence[IssuedCertificate],
    *,
    anchors: TrustAnchors,
    vm_names: Iterable[str],
    at: datetime,
    cache: VerifiedACs | None = None,
    parsed: ParsedACs | None = None,
) -> list[tuple[AttributeSet, list[str]]]:
    """The approved attributes for each of ``vm_names``, as groups of VMs that share them.

    Why: an AC's outcome depends on the VM only through the VMs it is limited to, so every
    VM that no AC names gets the same attributes: a listing over a 10k-VM fleet approves the
    holder's ACs once, plus once per VM that an AC names, instead of once per VM. Each
    group's attributes are exactly ``approve_attribute_certificates(..., vm=name)``'s.
    """
    parsed = parsed or ParsedACs()
    named: set[str] = set()
    for row in holdings:
        try:
            named.update(parsed.parse(row).target_vms)
        except CAError:
            continue  # set aside for every VM alike

    def attributes_at(vm: str) -> AttributeSet:
        return approve_attribute_certificates(
            holder, holder_cert, holdings, anchors=anchors, vm=vm, at=at, cache=cache,
            parsed=parsed).attributes

    common: list[str] = []
    groups: dict[AttributeSet, list[str]] = {}
    for name in vm_names:
        if name in named:
            groups.setdefault(attributes_at(name), []).append(name)
        else:
            common.append(name)
    if common:
        groups.setdefault(attributes_at(common[0]), []).extend(common)
    return list(groups.items())
