"""Password logins, one failed-login limit for all of them.

Shipper's login, Qt's ``/login`` and ``/upload`` Basic credentials and the portal's login all
call :func:`limited_login`, so an account's failures count wherever they happen, and the limits
are the runtime's (``DEPOT_LOGIN_*_RATE``), not any one dialect's.
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.accounts import Accounts, User
from runtime.ratelimit import LoginRates, guarded_login
from runtime.services import Services


async def limited_login(
    svc: Services, account: str, address: str | None, authenticate: Callable[[], User | None]
) -> User | None:
    """``authenticate()`` under the failed-login limits; raises LoginThrottledError while locked."""
    limits = svc.config.limits
    rates = LoginRates(limits.login_account, limits.login_address, limits.login_account_global)
    return await guarded_login(lambda: svc.storage.db, account, address, rates, authenticate)


async def password_login(svc: Services, name: str, password: str, address: str | None) -> User | None:
    """The user of ``name`` and ``password``, or None; under the limits above."""
    return await limited_login(
        svc, name, address, lambda: Accounts(svc.storage.db).authenticate(name, password)
    )
