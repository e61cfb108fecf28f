"""Worker processes for big scans: ``python -m builder.scan_worker``.

Reading a package is mostly Python work (tar headers, zip directories, manifests), so threads
only contend for the GIL. A scan with many files to read splits them over a few of these
workers instead. They are plain child processes started with ``-m``, not multiprocessing's: the
caller's ``__main__`` is never imported again (a script without a main guard would otherwise run
a second build in every worker), and no lock or other descriptor of the builder is inherited.

Protocol: the parent writes one pickle ``(repo, settings, jobs)`` to stdin, with ``jobs`` a list
of ``(relpath, reader name, cache key)``; the worker writes one JSON line per job to stdout, the
scan-cache entry of that file, in order.
"""

from __future__ import annotations

import json
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from builder.errors import FormatError
from builder.formats import Reader, Source
from builder.model import StoreSettings

Job = tuple[str, str, list[Any]]
# Entries read but not yet taken by the build: how far the workers may run ahead of it.
QUEUE_LENGTH = 256


class ScanWorkerError(RuntimeError):
    """A worker died or answered something else than one entry per job."""


def stream_workers(
    repo: Path, settings: StoreSettings, shares: list[list[Job]]
) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Read each share in its own worker process; yields (share, position in it, entry) as the
    entries arrive, so the caller can store each and let it go: a first build of a hundred
    thousand packages never holds them all. A bounded queue between the workers' pipes and the
    caller keeps the workers from running far ahead. Raises OSError or ScanWorkerError when
    that does not work out (the caller reads what it did not get in-process)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)  # the same builder, installed or not
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "builder.scan_worker"]
    procs: list[subprocess.Popen[bytes]] = []
    failures: list[BaseException] = []
    arrived: queue.Queue[tuple[int, int, bytes | None]] = queue.Queue(maxsize=QUEUE_LENGTH)
    closed = threading.Event()

    def put(item: tuple[int, int, bytes | None]) -> bool:
        while not closed.is_set():
            try:
                arrived.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump(i: int) -> None:
        proc = procs[i]
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(pickle.dumps((str(repo), settings, shares[i])))
            proc.stdin.close()
            for position, line in enumerate(proc.stdout):
                if not put((i, position, line)):
                    return
        except (OSError, ValueError) as exc:
            failures.append(exc)
        finally:
            put((i, -1, None))

    try:
        for _share in shares:
            procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env))
        for i in range(len(procs)):
            threading.Thread(target=pump, args=(i,), daemon=True).start()
        counts = [0] * len(shares)
        finished = 0
        while finished < len(shares):
            i, position, line = arrived.get()
            if line is None:
                finished += 1
                continue
            counts[i] += 1
            yield i, position, json.loads(line)
        codes = [proc.wait() for proc in procs]
        if failures or any(codes) or counts != [len(s) for s in shares]:
            raise ScanWorkerError(f"scan worker failed (exit codes {codes}, {failures})")
    finally:
        closed.set()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def read_entry(
    repo: Path, relpath: str, reader: Reader, key: list[Any], settings: StoreSettings
) -> dict[str, Any]:
    """Read one package into its scan-cache entry: its records (with their digests) or the
    reason it cannot be published."""
    try:
        if (repo / relpath).is_symlink():
            raise FormatError("symbolic links are not followed")
        records = reader.read(Source(repo, relpath, settings))
        return {
            "key": key,
            "records": [r.to_dict() for r in records],
            "digests": [r.digest for r in records],
            "error": None,
        }
    except FormatError as exc:
        return {"key": key, "records": [], "error": str(exc)}
    except OSError as exc:
        return {"key": None, "records": [], "error": f"cannot read: {exc.strerror or exc}"}


def main() -> int:
    from builder.registry import readers  # the registry imports every dialect: only in a worker

    repo, settings, jobs = pickle.load(sys.stdin.buffer)
    by_name = {r.name: r for r in readers()}
    out = sys.stdout
    for relpath, name, key in jobs:
        entry = read_entry(Path(repo), relpath, by_name[name], key, settings)
        out.write(json.dumps(entry, separators=(",", ":")) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
