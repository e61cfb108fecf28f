"""A throwaway PostgreSQL server for the tests: a cluster in a temp folder on a free port,
started once per session and stopped at the end, and a fresh database per test.

The runtime suite runs twice (scripts/test): on SQLite, then with ``DEPOT_TEST_DATABASE=
postgresql``, where every test gets ``DEPOT_DATABASE_URL`` naming a database of its own (a
copy of an empty template, dropped after the test). The server is Debian's ``postgresql``
package, installed by scripts/setup-system; as root it runs as the ``postgres`` user, since
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.serving import free_port

SUPERUSER = "depot"


def binaries() -> Path | None:
    """The folder of initdb and postgres, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(candidates[-1]).parent if candidates else None


class PostgresCluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="depot-pg-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    # -- lifetime ------------------------------------------------------------------------------

    def _run_as(self) -> dict[str, int]:
        return {"user": self._user.pw_uid, "group": self._user.pw_gid} if self._user else {}

    def start(self) -> PostgresCluster:
        data = self.folder / "data"
        if self._user:
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "--locale=C",
                "--encoding=UTF8",
            ],
            check=True,
            capture_output=True,
            **self._run_as(),  # type: ignore[call-overload]
        )
        log = open(self.folder / "server.log", "wb")  # noqa: SIM115 - the server's lifetime
        self.process = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.folder),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=400",
                "-c",
                "shared_buffers=64MB",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            **self._run_as(),  # type: ignore[call-overload]
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with self._admin():
                    break
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}") from None
                time.sleep(0.1)
        self._make_template()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: SIGTERM ("smart") waits for clients
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "server.log").read_text(errors="replace")[-size:]
        return ""

    # -- databases -----------------------------------------------------------------------------

    def url(self, name: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    @contextlib.contextmanager
    def _admin(self):  # type: ignore[no-untyped-def]
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            yield conn

    def _make_template(self) -> None:
        """An empty template database: CREATE DATABASE … TEMPLATE copies its files, which is
        quicker than creating the catalog each time."""
        with self._admin() as conn:
            conn.execute("CREATE DATABASE depot_template TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'")

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        name = f"{prefix}{next(self._names)}_{os.getpid()}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE depot_template')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_cluster() -> PostgresCluster | str:
    """A started cluster, or why there is none (the tests that need one skip with it)."""
    bindir = binaries()
    if bindir is None:
        return "PostgreSQL is not installed (scripts/setup-system installs Debian's postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    return PostgresCluster(bindir).start()
