"""The agent's settings and the layout of everything it owns under ``--root``."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from runtime.agent.net import Origins

# Names and versions come from the network; only these shapes ever become path components.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")

DEFAULT_MAX_UNPACKED = 2 * 1024**3
MAX_ENTRY_INDEX = 1024**2  # device/index.json: received and inflated
# A platform's index: the sizes the entry states for its shards together, the bytes received
# for them together, and each shard's received and inflated bytes (never past its stated size).
MAX_PLATFORM_INDEX = 32 * 1024**2
# The shards the entry may list for one platform: the store makes 16 (one per hex digit of a
# name's SHA-256, builder.device.render.SHARDS); room for a store that splits finer, while an
# entry listing thousands is refused before one is fetched.
MAX_SHARDS = 256
DEVICE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # a device id, name or group (the store's rule)
HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,252})$")


def valid_name(name: object) -> bool:
    return isinstance(name, str) and bool(NAME.fullmatch(name))


def valid_version(version: object) -> bool:
    return isinstance(version, str) and bool(VERSION.fullmatch(version)) and ".." not in version


def host_name(value: str) -> str | None:
    """A host name or address in one canonical spelling (lower case, no brackets, no trailing
    dot), or None when ``value`` is neither."""
    name = value.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        pass
    name = name.rstrip(".")
    return name if HOST_NAME.fullmatch(name) and ".." not in name else None


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
    # Host names (besides loopback) this agent answers to, e.g. the robot's own address.
    allowed_hosts: tuple[str, ...] = ()
    # Other origins the agent may download from besides the store's (index entries, redirects).
    mirrors: tuple[str, ...] = ()
    inbox: Path | None = None  # the only folder install_local_file takes files from
    max_entry_index: int = MAX_ENTRY_INDEX
    max_platform_index: int = MAX_PLATFORM_INDEX
    max_shards: int = MAX_SHARDS
    # The store's TUF root this agent starts trusting from; None = the unsigned index.
    trusted_root: Path | None = None
    # Who this device is for staged rollouts: the enrolled name the store answers wins over
    # device_id, which wins over a random id the agent makes once (ROOT/device-id).
    device_id: str | None = None
    groups: tuple[str, ...] = ()  # until the store says which groups the enrolled device is in
    device_token: str | None = field(default=None, repr=False)  # sent with every report
    report_to: str | None = None  # the runtime's base URL for reports; default: the store's
    origins: Origins = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if not self.store.endswith("/"):
            self.store += "/"
        self.origins = Origins(self.store, self.mirrors)  # ValueError for a non-http(s) URL
        if self.trusted_root is not None:
            self.trusted_root = Path(os.path.abspath(self.trusted_root))
        if self.device_id is not None and not DEVICE.fullmatch(self.device_id):
            raise ValueError(f"--device-id {self.device_id!r} must match {DEVICE.pattern}")
        for group in self.groups:
            if not DEVICE.fullmatch(group):
                raise ValueError(f"--groups: {group!r} must match {DEVICE.pattern}")
        if self.report_to is None:
            self.report_to = self.store
        elif not self.report_to.endswith("/"):
            self.report_to += "/"
        Origins(self.report_to)  # ValueError for a non-http(s) URL
        names = []
        for raw in self.allowed_hosts:
            name = host_name(raw)
            if name is None:
                raise ValueError(f"--allowed-host {raw!r} is not a host name or address")
            names.append(name)
        self.allowed_hosts = tuple(names)
        # Not resolved: the agent opens the configured folder itself, whatever it links to.
        self.inbox = Path(os.path.abspath(self.inbox)) if self.inbox is not None else self.root / "inbox"

    @property
    def database(self) -> Path:
        return self.root / "agent.db"

    @property
    def index_cache(self) -> Path:
        return self.root / "index.json"

    @property
    def tuf(self) -> Path:
        """The store's verified TUF metadata (ngclient's metadata folder)."""
        return self.root / "tuf"

    @property
    def device_id_file(self) -> Path:
        return self.root / "device-id"

    @property
    def reports_url(self) -> str:
        assert self.report_to is not None
        return self.report_to + "device/api/v1/reports"

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

    @property
    def local_copies(self) -> Path:
        return self.downloads / "local"

    def folders(self) -> list[Path]:
        return [self.root, self.downloads, self.modules, self.firmware, self.staging, self.trash]
