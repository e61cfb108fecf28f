"""Run the incremental build from the runtime, so a client that uploads then lists sees it.

The build itself takes the builder's file lock (shared with ``depot build`` and ``depot watch``
and with other runtime processes); the asyncio lock only keeps one process from queueing
several threads on it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from depot.builder.build import BuildResult, build


class Rebuilder:
    def __init__(self, repo: Path, site: Path) -> None:
        self.repo, self.site = repo, site
        self._lock = asyncio.Lock()
        self.last: BuildResult | None = None

    async def rebuild(self) -> BuildResult:
        async with self._lock:
            self.last = await run_in_threadpool(build, self.repo, self.site)
            return self.last
