"""The store's signed metadata (TUF), as python-tuf's ngclient checks it.

With ``--trusted-root`` the agent believes nothing the store serves unless the store's TUF
metadata vouches for it: ngclient updates root, timestamp, snapshot and targets in the
specification's order (5.3 to 5.6), refusing expired metadata (a frozen store), versions lower
than the ones it saw before (rollback), signatures below a role's threshold (a wrong key), and
a new root not signed by the threshold of the old one. Every index the agent reads and every
file it downloads must then be a target of the verified targets metadata, with its length and
SHA-256: the index files are fetched through ngclient, the package files by the agent's own
resumable downloader against the lengths and hashes the targets metadata states.

The trusted root file is read only once, when the metadata folder (``ROOT/tuf``) has no root
yet; after that the chain of roots ngclient verified and kept there is the trust, so a rotated
root stays accepted across restarts and an old root file cannot take it back.

Target paths are the site's own paths (``device/index.json``, ``files/cc/0f2b…/ax.tar.gz``):
package files and the device index's shards are already named by their content, so the store
publishes no hash-prefixed copies and the agent turns ngclient's prefixing off
(``prefix_targets_with_hash=False``); metadata files are still fetched by version
(consistent snapshots), so a build published meanwhile cannot mix into one refresh.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from runtime.agent.net import ForeignOriginError, Origins, open_get

if TYPE_CHECKING:
    from tuf.api.metadata import TargetFile
    from tuf.ngclient import Updater

# Caps on the metadata documents (ngclient's own defaults are 512 kB for root and timestamp,
# 2 MB for snapshot and 5 MB for targets; a targets role of 100,000 files is about 30 MB).
ROOT_MAX = 512 * 1024
TIMESTAMP_MAX = 16 * 1024
SNAPSHOT_MAX = 1024 * 1024
TARGETS_MAX = 64 * 1024 * 1024


class TrustError(Exception):
    """The store's signed metadata, or a file it names, was refused; the message says why."""


class TargetMismatchError(TrustError):
    """A target's bytes disagree with the length or SHA-256 the verified metadata states."""


@dataclass(frozen=True)
class Expected:
    """What the verified targets metadata says one file is."""

    path: str
    length: int
    sha256: str


def _fetcher(origins: Origins, timeout: float, shared: httpx.Client | None = None) -> object:
    """ngclient's network access through the agent's own rules: only the store's and the
    mirrors' origins, redirects checked hop by hop, a deadline per document. With ``shared``
    (the caller's to close), every document goes through that client, over one keep-alive
    connection; without it, or once it is closed, each through a client of its own."""
    from tuf.api import exceptions
    from tuf.ngclient import FetcherInterface

    class AgentFetcher(FetcherInterface):
        def _fetch(self, url: str) -> Iterator[bytes]:
            # A generator: ngclient wraps only what is raised before the first chunk, so every
            # failure while reading is turned into its DownloadError here.
            deadline = time.monotonic() + max(4 * timeout, 60.0)
            own = shared is None or shared.is_closed
            client = httpx.Client(timeout=timeout, follow_redirects=False) if own else shared
            assert client is not None
            try:
                # identity: ngclient counts the bytes against its caps as they arrive, which
                # only bounds memory when they are not inflated on the way (a gzip bomb).
                headers = {"Accept-Encoding": "identity"}
                with open_get(client, url, origins, headers, what="signed metadata") as response:
                    if response.status_code != 200:
                        raise exceptions.DownloadHTTPError(
                            f"{url} answered {response.status_code}", response.status_code
                        )
                    encoding = response.headers.get("content-encoding", "identity").strip().lower()
                    if encoding not in ("", "identity"):
                        raise exceptions.DownloadError(f"{url} came with Content-Encoding {encoding[:40]!r}")
                    for chunk in response.iter_raw():
                        if time.monotonic() > deadline:
                            raise exceptions.SlowRetrievalError(f"{url} is arriving too slowly")
                        yield chunk
            except exceptions.DownloadError:
                raise
            except ForeignOriginError as exc:
                raise exceptions.DownloadError(str(exc)) from exc
            except httpx.HTTPError as exc:
                raise exceptions.DownloadError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from exc
            finally:
                if own:
                    client.close()

    return AgentFetcher()


def describe(exc: BaseException) -> str:
    """A refusal as one line for the package list and the task log: ngclient's exception class
    says what kind of attack or fault it is (ExpiredMetadataError, BadVersionNumberError, ...)."""
    cause = exc.__cause__
    text = f"{type(exc).__name__}: {exc}"
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text


class TrustedStore:
    """One store's TUF metadata, kept in ``folder`` and refreshed from ``store``/tuf/."""

    def __init__(
        self, store: str, folder: Path, trusted_root: Path, origins: Origins, timeout: float
    ) -> None:
        self.store, self.folder, self.trusted_root = store, folder, trusted_root
        self.origins, self.timeout = origins, timeout

    def _bootstrap(self) -> bytes | None:
        if (self.folder / "root.json").is_file():
            return None  # the verified chain kept there wins over the file we started from
        try:
            return self.trusted_root.read_bytes()
        except OSError as exc:
            raise TrustError(f"cannot read the trusted root {self.trusted_root}: {exc.strerror}") from exc

    def refresh(self, client: httpx.Client | None = None) -> Updater:
        """A fresh ngclient updater whose top-level metadata is verified now (ngclient refreshes
        once per updater). With ``client``, the updater fetches everything through it (one
        keep-alive connection for the metadata and the targets). Raises TrustError with the
        reason."""
        from tuf.api import exceptions
        from tuf.ngclient import Updater, UpdaterConfig

        config = UpdaterConfig(
            root_max_length=ROOT_MAX,
            timestamp_max_length=TIMESTAMP_MAX,
            snapshot_max_length=SNAPSHOT_MAX,
            targets_max_length=TARGETS_MAX,
            prefix_targets_with_hash=False,
            app_user_agent="depot-agent",
        )
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            updater = Updater(
                metadata_dir=str(self.folder),
                metadata_base_url=self.store + "tuf/",
                target_base_url=self.store,
                fetcher=_fetcher(self.origins, self.timeout, client),  # type: ignore[arg-type]
                config=config,
                bootstrap=self._bootstrap(),
            )
            updater.refresh()
        except (exceptions.RepositoryError, exceptions.DownloadError, ValueError, OSError) as exc:
            raise TrustError(f"the store's signed metadata is refused: {describe(exc)}") from exc
        return updater

    @staticmethod
    def _targetinfo(updater: Updater, path: str) -> TargetFile:
        """The verified metadata's entry for ``path``; TrustError when it names no such target."""
        from tuf.api import exceptions

        try:
            info = updater.get_targetinfo(path)
        except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
            raise TrustError(f"the store's signed metadata is refused: {describe(exc)}") from exc
        if info is None:
            raise TrustError(f"{path} is not a target of the store's signed metadata; not trusted")
        return info

    @classmethod
    def expected(cls, updater: Updater, path: str) -> Expected:
        """The verified length and SHA-256 of the target ``path``; TrustError when the
        metadata does not name it (or names it without a SHA-256)."""
        info = cls._targetinfo(updater, path)
        sha256 = info.hashes.get("sha256")
        if not isinstance(sha256, str):
            raise TrustError(f"the signed metadata states no SHA-256 for {path}; not trusted")
        return Expected(path, info.length, sha256.lower())

    def fetch(self, updater: Updater, path: str, max_length: int) -> bytes:
        """The bytes of the target ``path``, downloaded and checked by ngclient against the
        verified metadata (length first, so no more than it states is read)."""
        from tuf.api import exceptions

        info = self._targetinfo(updater, path)
        if info.length > max_length:
            raise TrustError(f"the signed metadata says {path} is {info.length} bytes, over the limit")
        fd, tmp = tempfile.mkstemp(prefix=".tuf-", dir=self.folder)
        os.close(fd)
        try:
            updater.download_target(info, filepath=tmp)
            return Path(tmp).read_bytes()
        except ForeignOriginError as exc:
            raise TrustError(str(exc)) from exc
        except exceptions.LengthOrHashMismatchError as exc:
            raise TargetMismatchError(
                f"{path} does not match the store's signed metadata: {describe(exc)}"
            ) from exc
        except exceptions.DownloadLengthMismatchError as exc:
            raise TargetMismatchError(
                f"{path} is longer than the store's signed metadata states: {describe(exc)}"
            ) from exc
        except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
            raise TrustError(
                f"{path} could not be fetched as the signed metadata states: {describe(exc)}"
            ) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def target_path(bases: tuple[str, ...], url: str) -> str | None:
    """The target path of an absolute download URL: its path below the store's base URL (or a
    mirror's, which holds a copy of the same site), or None when it is below neither."""
    for base in bases:
        base = base if base.endswith("/") else base + "/"
        if url.startswith(base) and len(url) > len(base):
            path = url[len(base) :]
            return None if "?" in path or "#" in path else path
    return None
