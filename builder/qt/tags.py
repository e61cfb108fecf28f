"""Software tags of the Qt deployment server (``name[:version]``), as its documentation means them.

A client says what it is (``qt:5.15.2,build_target:desktop``); a package says what it needs
(``qt:5.15``). A package is shown when every one of its tags is matched by a client tag that is
equal or more specific; untagged packages always match.

The semantics follow the reference server's intended (Python 2) behaviour, not its Python 3
breakage: tags are ASCII only, and several versions of one name are kept side by side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MALFORMED = "Malformed tag"


class TagError(ValueError):
    """A tag or tag list that does not parse."""

    def __init__(self, message: str = MALFORMED) -> None:
        super().__init__(message)


def _name_ok(text: str) -> bool:
    return bool(text) and all((c.isascii() and c.isalnum()) or c == "_" for c in text)


def _version_ok(text: str) -> bool:
    return bool(text) and all((c.isascii() and c.isalnum()) or c in "_." for c in text)


@dataclass(frozen=True, order=True)
class SoftwareTag:
    name: str  # lower-cased
    version: str | None = None  # case kept

    @classmethod
    def parse(cls, text: object) -> SoftwareTag:
        if not isinstance(text, str):
            raise TagError("Invalid input data-type")
        parts = text.split(":")
        if len(parts) > 2 or not _name_ok(parts[0]) or (len(parts) == 2 and not _version_ok(parts[1])):
            raise TagError()
        return cls(parts[0].lower(), parts[1] if len(parts) == 2 else None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"

    @property
    def has_version(self) -> bool:
        return self.version is not None

    def match(self, other: SoftwareTag) -> bool:
        """True when ``self`` is ``other`` or more specific (``qt:5.15.2`` matches ``qt:5.15``
        and ``qt``, not ``qt:5.1``). In filtering, ``self`` is the client's tag."""
        if self.name != other.name:
            return False
        if self.version == other.version or other.version is None:
            return True
        return self.version is not None and self.version.startswith(other.version + ".")


class TagList:
    """A normalised set of tags: per name either one unversioned tag, or versioned tags none of
    which is more specific than another added before it."""

    def __init__(self, tags: Iterable[SoftwareTag] = ()) -> None:
        self._by_name: dict[str, list[SoftwareTag]] = {}
        for tag in tags:
            self.append(tag)

    @classmethod
    def parse(cls, text: str) -> TagList:
        """``"qt:5.15,build_target:desktop"`` → TagList; TagError on any malformed or empty tag."""
        return cls(SoftwareTag.parse(part) for part in text.split(","))

    @classmethod
    def parse_optional(cls, text: str) -> TagList:
        """Like :meth:`parse`, but an empty string is the empty list."""
        return cls() if text == "" else cls.parse(text)

    def append(self, tag: SoftwareTag) -> None:
        existing = self._by_name.get(tag.name)
        if not tag.has_version or existing is None:
            self._by_name[tag.name] = [tag]
            return
        if existing[0].has_version and not any(tag.match(e) for e in existing):
            existing.append(tag)

    def has_version(self, name: str) -> bool:
        entries = self._by_name.get(name)
        return bool(entries) and entries is not None and entries[0].has_version

    def __iter__(self) -> Iterator[SoftwareTag]:
        return iter(sorted((t for ts in self._by_name.values() for t in ts), key=str))

    def strings(self) -> list[str]:
        return [str(t) for t in self]

    def __str__(self) -> str:
        return ",".join(self.strings())

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())

    def is_empty(self) -> bool:
        return not self._by_name

    def hash(self) -> str:
        """An order-independent digest of the normalised list."""
        return hashlib.md5(str(self).encode(), usedforsecurity=False).hexdigest()

    def match_positive(self, required: TagList) -> bool:
        """Every name in ``required`` is present here with a matching version (reference API)."""
        if any(name not in self._by_name for name in required._by_name):
            return False
        for name, wanted in required._by_name.items():
            if not self.has_version(name) or not required.has_version(name):
                continue
            if not any(mine.match(w) for w in wanted for mine in self._by_name[name]):
                return False
        return True

    def match_negative(self, conflicts: TagList) -> bool:
        """Nothing in ``conflicts`` matches a tag here (reference API)."""
        for name, theirs in conflicts._by_name.items():
            mine = self._by_name.get(name)
            if mine is None:
                continue
            if not conflicts.has_version(name) or not self.has_version(name):
                return False
            if any(m.match(t) for t in theirs for m in mine):
                return False
        return True


def app_matches(client: TagList, app_tags: Iterable[str]) -> bool:
    """The store's filter: an app is shown when each of its tags is matched by a client tag."""
    parsed = [SoftwareTag.parse(t) for t in app_tags]
    return all(any(c.match(a) for c in client) for a in parsed)
