"""Database connections follow the live threads: a thread pool whose threads come and go does not
pile up open descriptors of depot.db (they were closed only by the garbage collector)."""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

from runtime.storage import DATABASE_FILE, Storage


def _open_descriptors(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(path)):
                count += 1
        except OSError:
            continue
    return count


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.db.execute("SELECT 1")
    gc.disable()  # the point: descriptors must not wait for the garbage collector
    try:
        counts = []
        for _round in range(6):
            threads = [threading.Thread(target=lambda: storage.db.execute("SELECT 1")) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            storage.db.execute("SELECT 1")  # any later use sweeps what ended threads left
            assert storage.open_connections() == 1
            counts.append(_open_descriptors(tmp_path / DATABASE_FILE))
        # SQLite keeps a closed connection's descriptor while this process holds locks on the
        # file and reuses it for the next connection: the count settles, it does not grow with
        # every round of threads (it grew by 16 a round, one database and one WAL per thread).
        assert max(counts) - min(counts) <= 4, counts
    finally:
        gc.enable()
        storage.close()
    assert storage.open_connections() == 0


def test_a_live_thread_keeps_its_connection(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    first = storage.db
    assert storage.db is first
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(storage.db))
    worker.start()
    worker.join()
    assert seen[0] is not first
    storage.close()
