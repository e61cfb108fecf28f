"""The agent's settings and the layout of everything it owns under ``--root``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Names and versions come from the network; only these shapes ever become path components.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")

DEFAULT_MAX_UNPACKED = 2 * 1024**3


def valid_name(name: object) -> bool:
    return isinstance(name, str) and bool(NAME.match(name))


def valid_version(version: object) -> bool:
    return isinstance(version, str) and bool(VERSION.match(version)) and ".." not in version


@dataclass
class AgentConfig:
    """One agent: which store it follows, where it keeps its state, how it installs."""

    store: str
    root: Path
    platform: str | None = None
    secret: str | None = None
    flasher: str | None = None  # shell words; the image path is appended
    health_check: str | None = None  # shell words run after activation; failure rolls back
    max_unpacked: int = DEFAULT_MAX_UNPACKED
    retries: int = 8  # consecutive failed attempts (without progress) before a download fails
    retry_delay: float = 1.0  # first back-off; doubles per failure up to 60 s
    timeout: float = 30.0
    max_restarts: int = 5  # a task interrupted this many times by restarts fails (loop guard)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if not self.store.endswith("/"):
            self.store += "/"

    @property
    def database(self) -> Path:
        return self.root / "agent.db"

    @property
    def index_cache(self) -> Path:
        return self.root / "index.json"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def modules(self) -> Path:
        return self.root / "modules"

    @property
    def firmware(self) -> Path:
        return self.root / "firmware"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def trash(self) -> Path:
        return self.root / "trash"

    def folders(self) -> list[Path]:
        return [self.root, self.downloads, self.modules, self.firmware, self.staging, self.trash]
