"""Run the incremental build from the runtime, so a client that uploads then lists sees it.

The build itself takes the builder's file lock (shared with ``depot build`` and ``depot watch``
and with other runtime processes); on PostgreSQL it first takes the database's build lock
(:func:`runtime.storage.build_lock`), which every node shares, since ``flock`` does not hold
across hosts on a network file system. The asyncio lock only keeps one process from queueing
several threads on it. A build that cannot run (a broken depot.toml, say) is logged, not
raised: the caller has already stored the upload in repo/, so it answers success and the next
build that can run publishes it; a 500 would only make the client retry into a duplicate. The
same holds for a build that fails otherwise (an OSError such as a full disk, or a bug): it is
logged with its traceback and rebuild() still returns. A package file that vanishes or changes
under the build is no failure at all: the build holds it (``BuildResult.changed``).

An endpoint that knows what it wrote passes it (``rebuild(changed=[...])``): the build then
stats those paths, not every file of repo/ (builder/scan.py), so an upload is published in the
same time at any store size. Other writers of repo/ (a maintainer's drop, another node's
upload) are seen by a walk of repo/: every build without a feed walks, and so does a fed one
when the last walk is more than WALK_EVERY seconds old.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from builder.build import BuildResult, build
from builder.errors import BuildError, SettingsError, TrustError
from runtime.database import DatabaseError
from runtime.storage import build_lock

log = logging.getLogger("runtime.rebuild")

# How stale the view of files nobody named may get: a fed build walks repo/ when the last walk
# is older than this.
WALK_EVERY = 60.0


class Rebuilder:
    def __init__(
        self, repo: Path, site: Path, keys: Path | None = None, database_url: str = "", builds: bool = True
    ) -> None:
        self.repo, self.site, self.keys = repo, site, keys  # keys: the folder that signs site/tuf/
        self.database_url = database_url  # "": no database lock (a SQLite store on one machine)
        # False (depot serve --no-build): site/ is another node's to write; uploads wait in repo/
        # for that node's next build
        self.builds = builds
        self._lock = asyncio.Lock()
        self._walked: float | None = None  # time.monotonic() of the last build that walked

    async def rebuild(self, changed: Iterable[str] | None = None) -> BuildResult | None:
        """The build's result, or None when it could not run (the reason is logged).
        ``changed``: the paths of repo/ (relative) the caller wrote, when it knows them."""
        if not self.builds:
            log.info("not rebuilt here (depot serve --no-build): the building node publishes repo/")
            return None
        feed = list(changed) if changed is not None else None
        async with self._lock:
            now = time.monotonic()
            if feed is not None and (self._walked is None or now - self._walked > WALK_EVERY):
                feed = None
            if feed is None:
                self._walked = now
            try:
                return await run_in_threadpool(self._build, feed)
            except (BuildError, SettingsError, TrustError, DatabaseError) as exc:
                # The messages name files and TOML positions, never values from depot.toml.
                log.error("the catalog was not rebuilt: %s: %s", type(exc).__name__, exc)
                return None
            except Exception:  # an OSError, or a bug: the upload is stored, so never a 500 here
                log.exception("the catalog was not rebuilt: the build failed")
                return None

    def _build(self, changed: list[str] | None = None) -> BuildResult:
        if not self.database_url:
            return build(self.repo, self.site, keys=self.keys, changed=changed)
        with build_lock(self.database_url):
            return build(self.repo, self.site, keys=self.keys, changed=changed)
