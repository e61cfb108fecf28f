"""The error family of Depot.

Every error Depot raises on purpose derives from :class:`DepotError`, and each family's name ends
in ``Error``. The command line turns any of them into one line on standard error and the
family's ``exit_code``; anything else is a bug and keeps its traceback. The runtime's families
(``runtime.errors``) and the device agent's derive from the same root, so one ``except
DepotError`` separates "the input was wrong" from "the code is wrong" everywhere.
"""

from __future__ import annotations


class DepotError(Exception):
    """Root of every error Depot raises on purpose; the message is meant for a person."""

    exit_code = 1


class FormatError(DepotError):
    """A file cannot be published; the message says why."""


class SettingsError(DepotError, ValueError):
    """``depot.toml`` or a sidecar cannot be used; the message names the file, table and key."""


class BuildError(DepotError):
    """The build cannot run (no repo/, a foreign site/ folder, another build holds the lock)."""


class DiskFullError(BuildError):
    """The disk the build writes to is full; the site is left as it was (exit status 1)."""


class TrustError(DepotError):
    """The key folder or the signed TUF metadata cannot be used (missing keys, too few keys for a
    role's threshold, a key folder inside repo/ or site/); the message says which and what to do."""
