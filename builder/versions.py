"""Version ordering for every version form the four dialects use.

The rules, in order:

1. A leading ``v`` before a digit is ignored: ``v14`` == ``14``.
2. The release part (before the first ``-`` or ``+``) is compared number by number, with
   trailing zeros ignored: ``0.3.2`` < ``0.3.10`` < ``1.1`` == ``1.1.0``; integer versionCodes
   are just one-number releases: ``9`` < ``10``.
3. A suffix that starts like a pre-release (``alpha``, ``beta``, ``rc``, ``pre``, ``dev``,
   ``a1``, ``b2``) sorts *below* the bare release: ``1.0-rc1`` < ``1.0``. Pre-releases of one
   release go ``dev`` < ``alpha``/``a`` < ``beta``/``b`` < ``pre``/``preview``/``rc``, then by
   their number: ``1.0-rc9`` < ``1.0-rc10``. Any other suffix is a build or platform tag and
   sorts as the release itself, ties broken by the tag (numbers in it compared as numbers):
   ``2.4.1-pi64`` > ``2.4.0-pi64``, ``1.1.6-opi64`` > ``1.1.5`` and ``1.0+build12`` > ``1.0+build7``.
4. A version whose release part has no digit (``master``, ``main``, ``nightly``, ``master-pi64``)
   is a branch build and sorts above every numbered release, which is what the device API's
   "installed version(master-pi64) is higher than downloaded version(2.4.1-pi64)" says.

Letters compare without regard to case; the lower-cased text breaks any remaining tie.
"""

from __future__ import annotations

import functools
import re

_PRERELEASE = re.compile(r"^(alpha|beta|rc|preview|pre|dev|a(?=\d)|b(?=\d))", re.IGNORECASE)
_PRERELEASE_RANK = {"dev": 0, "alpha": 1, "a": 1, "beta": 2, "b": 2, "pre": 3, "preview": 3, "rc": 3}
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
    match = re.match(r"^([^-+]*)[-+]?(.*)$", text)
    assert match is not None
    release, suffix = match.groups()
    if not any(c.isdigit() for c in release):
        return (1, (), (), text.lower())
    parts = [_part_key(p) for p in release.split(".")]
    while parts and all(kind == 1 and value == 0 for kind, value in parts[-1]):
        parts.pop()
    pre = _PRERELEASE.match(suffix)
    if not suffix:
        suffix_key: tuple = (1, ())
    elif pre:
        suffix_key = (0, _PRERELEASE_RANK[pre.group(1).lower()], _part_key(suffix[pre.end() :]))
    else:
        suffix_key = (1, _part_key(suffix))
    return (0, tuple(parts), suffix_key, suffix.lower())


def newest(versions: list[str]) -> str | None:
    """The highest of ``versions`` by :func:`version_key`, or None for an empty list."""
    return max(versions, key=version_key, default=None)
