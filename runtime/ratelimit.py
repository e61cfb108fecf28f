"""Request rate limits kept in SQLite, so every runtime process behind a load balancer sees the
same counts. Fixed windows: a key may be hit ``limit`` times per ``period`` seconds; past that,
the caller learns how many seconds remain until the window ends (for ``Retry-After``)."""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from runtime.database import Database
from runtime.storage import register_schema

PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?\s*$")
T = TypeVar("T")


def _v1(db: Database) -> None:
    db.execute(
        'CREATE TABLE rate_limits (key TEXT PRIMARY KEY, "window" INTEGER NOT NULL, count INTEGER NOT NULL,'
        " expires REAL NOT NULL)"
    )
    db.execute("CREATE INDEX rate_limits_expires ON rate_limits (expires)")


def _v2(db: Database) -> None:
    # The addresses an account has logged in from: the account-wide failure limit counts only the
    # others, so strangers cannot lock an owner out of the places the owner uses.
    db.execute(
        "CREATE TABLE login_known (account TEXT NOT NULL, address TEXT NOT NULL, last REAL NOT NULL,"
        " PRIMARY KEY (account, address))"
    )


register_schema("ratelimit", [_v1, _v2])
KNOWN_FOR = 90 * 86400  # an address stays known this long after its last successful login


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # seconds

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``"10/minute"``, ``"10/second"``, ``"5/15min"``; ``"off"`` or ``""`` → None (no limit)."""
        if text.strip().lower() in ("", "off", "none", "0"):
            return None
        match = RATE.match(text.lower())
        if not match or match[3] not in PERIODS:
            raise ValueError(f"rate {text!r} is not N/period (period: second, minute, hour, day)")
        return cls(int(match[1]), int(match[2] or 1) * PERIODS[match[3]])


class RateLimiter:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _window(self, rate: Rate, now: float) -> tuple[int, float]:
        window = int(now // rate.period)
        return window, (window + 1) * rate.period

    def hit(self, key: str, rate: Rate | None, now: float | None = None) -> int | None:
        """Count one request; None when allowed, else the seconds until the window resets."""
        if rate is None:
            return None
        now = time.time() if now is None else now
        window, ends = self._window(rate, now)
        row = self.db.execute(
            'INSERT INTO rate_limits (key, "window", count, expires) VALUES (?, ?, 1, ?) '
            "ON CONFLICT(key) DO UPDATE SET "
            'count = CASE WHEN rate_limits."window" = excluded."window"'
            " THEN rate_limits.count + 1 ELSE 1 END, "
            '"window" = excluded."window", expires = excluded.expires RETURNING count',
            [stored_key(key), window, ends],
        ).fetchone()
        if int(now) % 97 == 0:  # now and then, forget windows that are over
            self.db.execute("DELETE FROM rate_limits WHERE expires < ?", [now])
        return None if row[0] <= rate.limit else max(1, math.ceil(ends - now))

    def blocked(self, key: str, rate: Rate | None, now: float | None = None) -> int | None:
        """Without counting: the seconds to wait when ``key`` has used up its window, else None."""
        if rate is None:
            return None
        now = time.time() if now is None else now
        window, ends = self._window(rate, now)
        row = self.db.execute(
            'SELECT "window", count FROM rate_limits WHERE key = ?', [stored_key(key)]
        ).fetchone()
        if row and row[0] == window and row[1] >= rate.limit:
            return max(1, math.ceil(ends - now))
        return None

    def release(self, key: str, rate: Rate | None, now: float | None = None) -> None:
        """Take back one :meth:`hit` of the window ``now`` falls in (nothing once it is over)."""
        if rate is None:
            return
        now = time.time() if now is None else now
        window, _ends = self._window(rate, now)
        self.db.execute(
            'UPDATE rate_limits SET count = count - 1 WHERE key = ? AND "window" = ? AND count > 0',
            [stored_key(key), window],
        )

    def reset(self, key: str) -> None:
        self.db.execute("DELETE FROM rate_limits WHERE key = ?", [stored_key(key)])


def stored_key(key: str) -> str:
    """The key as the table keeps it: its SHA-256, so a client's name of any length or bytes
    (a 6 kB login name, a NUL) is a short plain key on both engines, and the table holds no
    account names or addresses."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def throttled_detail(seconds: int) -> str:
    """DRF's wording, which shippy parses for the first number."""
    unit = "second" if seconds == 1 else "seconds"
    return f"Request was throttled. Expected available in {seconds} {unit}."


class LoginThrottledError(Exception):
    """Too many failed logins for the account or the address: refused without checking."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} seconds")
        self.retry_after = retry_after


@dataclass(frozen=True)
class LoginRates:
    """The three failed-login limits (None disables one)."""

    pair: Rate | None  # failures per (account, address)
    address: Rate | None  # failures per address, whatever the account
    account: Rate | None  # failures per account from addresses it has never logged in from


async def guarded_login(
    database: Database | Callable[[], Database],
    account: str,
    address: str | None,
    rates: LoginRates,
    authenticate: Callable[[], T | None],
    now: float | None = None,
) -> T | None:
    """Every password login of every dialect goes through here, so one account's failures count
    wherever they happen and a locked login costs no slow password hash.

    A guesser is limited three ways, as the big login systems do: per (account, address), per
    address, and per account, the last counting only addresses that never logged in to that
    account and at a slower rate. Ten wrong passwords from a stranger's address lock that
    address out of that account (and, past the address limit, out of every account), but never
    the owner's own addresses: the account-wide limit does not apply to an address the account
    logged in from in the last 90 days. Refuses (LoginThrottledError) while a limit is used up,
    even for the right password; otherwise runs ``authenticate`` in a worker thread, counts a
    failure (None), and after a success forgets the pair's failures and remembers the address.

    The attempt is counted before its password is checked, with one atomic step per limit (the
    database's upsert), and a success takes its counts back: of concurrent attempts, on one
    node or on several, only as many as a limit has left get a password check; the rest are
    refused as if they had come one after the other. Checking first and counting afterwards
    let every concurrent attempt through while the count was still low."""
    at = time.time() if now is None else now
    name = account.lower()

    def connection() -> Database:
        """The calling thread's connection (``database`` may be Storage's per-thread getter)."""
        return database if isinstance(database, Database) else database()

    def limits() -> list[tuple[str, Rate | None]]:
        db = connection()
        known = address is not None and _known(db, name, address, at)
        keys = [(f"login-pair:{name}:{address}", rates.pair), (f"login-address:{address}", rates.address)]
        if not known:
            keys.append((f"login-account:{name}", rates.account))
        limiter = RateLimiter(db)
        for key, rate in keys:
            wait = limiter.blocked(key, rate, at)
            if wait is not None:
                raise LoginThrottledError(wait)  # locked: refused without counting
        taken: list[tuple[str, Rate | None]] = []
        for key, rate in keys:
            wait = limiter.hit(key, rate, at)
            taken.append((key, rate))
            if wait is not None:  # others took the last attempts meanwhile
                release(taken)
                raise LoginThrottledError(wait)
        return keys

    def release(keys: list[tuple[str, Rate | None]]) -> None:
        limiter = RateLimiter(connection())
        for key, rate in keys:
            limiter.release(key, rate, at)

    def succeeded(keys: list[tuple[str, Rate | None]]) -> None:
        db = connection()
        RateLimiter(db).reset(keys[0][0])
        release(keys[1:])  # a success counts against no limit
        if address is not None:
            db.execute(
                "INSERT INTO login_known (account, address, last) VALUES (?, ?, ?) "
                "ON CONFLICT(account, address) DO UPDATE SET last = excluded.last",
                [name, address, at],
            )

    # every database step in a worker thread: none of it runs on the event loop
    keys = await run_in_threadpool(limits)
    try:
        user = await run_in_threadpool(authenticate)
    except BaseException:
        await run_in_threadpool(release, keys)  # no answer is no failure
        raise
    if user is not None:  # a failure was counted before the check
        await run_in_threadpool(succeeded, keys)
    return user


def _known(db: Database, account: str, address: str, now: float) -> bool:
    if "\x00" in account + address:  # no account's name holds one (nor can PostgreSQL's text)
        return False
    row = db.execute(
        "SELECT last FROM login_known WHERE account = ? AND address = ?", [account, address]
    ).fetchone()
    return row is not None and row[0] >= now - KNOWN_FOR
