"""python-tuf's own client against a built site: the judge of the signed metadata.

``serve_site(site)`` serves a folder over real HTTP on 127.0.0.1 (a plain static server, as a
CDN would), and ``updater(...)`` makes a ``tuf.ngclient.Updater`` with the configuration a
Depot device uses: metadata from ``<url>/tuf/``, targets from ``<url>/`` without hash
prefixes (Depot's targets are already content-named, see docs/device-index.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tuf.ngclient import Updater, UpdaterConfig

from tests.support.agent import plain_http_server


@contextmanager
def serve_site(site: Path) -> Iterator[str]:
    """Serve ``site`` on a free port of 127.0.0.1 (a plain static server, as a CDN would);
    yields the base URL without a trailing slash."""
    with plain_http_server(site) as url:
        yield url.rstrip("/")


def updater(url: str, metadata_dir: Path, target_dir: Path, trusted_root: bytes | None = None) -> Updater:
    """An Updater on ``url``'s site; ``trusted_root`` bootstraps it (None: the root.json already
    in ``metadata_dir``, from an earlier refresh)."""
    metadata_dir.mkdir(parents=True, exist_ok=True)
    target_dir.mkdir(parents=True, exist_ok=True)
    if trusted_root is not None:
        (metadata_dir / "root.json").write_bytes(trusted_root)
    return Updater(
        metadata_dir=str(metadata_dir),
        metadata_base_url=f"{url}/tuf/",
        target_base_url=f"{url}/",
        target_dir=str(target_dir),
        config=UpdaterConfig(prefix_targets_with_hash=False),
        bootstrap=None,
    )


def fetch(
    url: str, metadata_dir: Path, target_dir: Path, path: str, trusted_root: bytes | None = None
) -> bytes:
    """Refresh, then download and verify one target; its bytes."""
    client = updater(url, metadata_dir, target_dir, trusted_root)
    client.refresh()
    info = client.get_targetinfo(path)
    assert info is not None, f"{path} is not a target"
    return Path(client.download_target(info, str(target_dir / path.replace("/", "_")))).read_bytes()
