"""Concurrent writers — threads and separate processes — extend one chain and never fork it."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable

from sqlalchemy import func, select

from certgate.audit.chain import AuditEvent
from certgate.audit.log import AuditLog
from certgate.audit.verification import VerificationReport
from certgate.installation import Installation
from certgate.store.database import Database
from certgate.store.schema import AuditEventRow

PROCESSES = 4
APPENDS = 50


def _append_many(url: str, worker: int, count: int) -> None:
    database = Database(url)
    try:
        log = AuditLog(database)
        for n in range(count):
            log.record(AuditEvent("test.append", f"worker:{worker}", outcome="ok",
                                  details={"worker": worker, "n": n}))
    finally:
        database.dispose()


def _count(installation: Installation) -> int:
    with installation.database.read() as session:
        return int(session.execute(select(func.count()).select_from(AuditEventRow))
                   .scalar_one())


def test_appends_from_several_processes_form_one_chain(
        installation: Installation, verify: Callable[[], VerificationReport]) -> None:
    initial = _count(installation)
    url = installation.database.url
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(url, w, APPENDS))
               for w in range(PROCESSES)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0] * PROCESSES
    report = verify()
    assert report.intact, report.problem
    assert report.entries_checked == initial + PROCESSES * APPENDS == _count(installation)


def test_appends_from_several_threads_form_one_chain(
        installation: Installation, verify: Callable[[], VerificationReport]) -> None:
    initial = _count(installation)
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            for n in range(APPENDS):
                installation.audit.record(AuditEvent("test.append", f"thread:{worker}",
                                                     details={"n": n}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(PROCESSES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    report = verify()
    assert report.intact, report.problem
    assert report.entries_checked == initial + PROCESSES * APPENDS
