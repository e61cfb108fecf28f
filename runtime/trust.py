"""``depot serve`` keeps ``site/tuf/timestamp.json`` fresh: a background task of the app's
lifespan signs it again before it expires (the rule is builder.trust.timestamp's: when less than
half of ``[trust] timestamp_hours`` is left), with the same function as ``depot sign-timestamp``.

It wakes every quarter of the validity, at most every hour (``interval``), so a timestamp is
renewed between half and a quarter of its validity before it expires, and a server that was
suspended catches up within the hour. A failure (a missing key, a full disk) is logged and
tried again at the next wake; it never stops the server. Runs only with a key folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool

from builder.errors import DepotError
from builder.settings import load_settings
from runtime.config import RuntimeConfig
from runtime.storage import build_lock

log = logging.getLogger("runtime.trust")


def interval(config: RuntimeConfig) -> float:
    """Seconds between two checks: a quarter of the timestamp's validity, at most an hour."""
    try:
        hours = load_settings(config.repo).trust.timestamp_hours
    except DepotError:
        hours = 24  # a broken depot.toml: check hourly; the build reports the settings
    return min(hours * 3600 / 4, 3600.0)


def resign_if_due(config: RuntimeConfig) -> tuple[int, str] | None:
    """Sign the timestamp again when it is due; (version, expiry), or None (not due, or failed:
    logged)."""
    from builder.trust.resign import sign_timestamp

    assert config.keys is not None
    try:
        with build_lock(config.database_url):  # on PostgreSQL, one node at a time signs
            signed = sign_timestamp(config.repo, config.site, config.keys, force=False)
    except DepotError as exc:
        log.error("the TUF timestamp was not signed again: %s: %s", type(exc).__name__, exc)
        return None
    except Exception:  # an OSError or a bug: the next wake tries again
        log.exception("the TUF timestamp was not signed again")
        return None
    if signed is not None:
        log.info("signed TUF timestamp version %d, expires %s", *signed)
    return signed


@contextlib.asynccontextmanager
async def timestamp_resigning(config: RuntimeConfig, every: float | None = None) -> AsyncIterator[None]:
    """While the app runs, sign the timestamp again when it is due (``every`` seconds: tests)."""
    if config.keys is None or not config.builds:  # --no-build: site/ is another node's to write
        yield
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(every if every is not None else interval(config))
            await run_in_threadpool(resign_if_due, config)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
