"""Version ordering for every version form the four dialects use.

The rules, in order:

1. A leading ``v`` before a digit is ignored: ``v14`` == ``14``.
2. The release part (before the first ``-`` or ``+``) is compared number by number, with
   trailing zeros ignored: ``0.3.2`` < ``0.3.10`` < ``1.1`` == ``1.1.0``; integer versionCodes
   are just one-number releases: ``9`` < ``10``.
3. A suffix that starts like a pre-release (``alpha``, ``beta``, ``rc``, ``pre``, ``dev``,
   ``a1``, ``b2``) sorts *below* the bare release: ``1.0-rc1`` < ``1.0``. Any other suffix is a
   build or platform tag and sorts as the release itself, ties broken by the tag text:
   ``2.4.1-pi64`` > ``2.4.0-pi64`` and ``1.1.6-opi64`` > ``1.1.5``.
4. A version with no digit at all (``master``, ``main``, ``nightly``) is a branch build and sorts
   above every numbered release, which is what the device API's
   "installed version(master-pi64) is higher than downloaded version(2.4.1-pi64)" says.
"""

from __future__ import annotations

import functools
import re

_PRERELEASE = re.compile(r"^(alpha|beta|rc|pre|preview|dev|a\d|b\d)", re.IGNORECASE)
_RUN = re.compile(r"\d+|[A-Za-z]+")

VersionKey = tuple


def _part_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Split ``"6b"`` into comparable runs: numbers compare as numbers, words as words."""
    return tuple((1, int(run)) if run.isdigit() else (0, run.lower()) for run in _RUN.findall(text))


@functools.lru_cache(maxsize=65536)
def version_key(version: str | int) -> VersionKey:
    """A sort key for ``version``; see the module docstring for the rules."""
    text = str(version).strip()
    if len(text) > 1 and text[0] in "vV" and text[1].isdigit():
        text = text[1:]
    if not any(c.isdigit() for c in text):
        return (1, (), 0, text.lower())
    match = re.match(r"^([^-+]*)[-+]?(.*)$", text)
    assert match is not None
    release, suffix = match.groups()
    parts = [_part_key(p) for p in release.split(".")]
    while parts and all(kind == 1 and value == 0 for kind, value in parts[-1]):
        parts.pop()
    if not suffix:
        suffix_rank = 1
    elif _PRERELEASE.match(suffix):
        suffix_rank = 0
    else:
        suffix_rank = 1
    return (0, tuple(parts), suffix_rank, suffix.lower())


def newest(versions: list[str]) -> str | None:
    """The highest of ``versions`` by :func:`version_key`, or None for an empty list."""
    return max(versions, key=version_key, default=None)
