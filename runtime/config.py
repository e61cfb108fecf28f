"""Runtime settings: where the store's folders are and the secrets it signs with."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from builder.atomic import fsync_dir, write_temp

SECRET_FILE = "secret.key"


@dataclass(frozen=True)
class RuntimeConfig:
    repo: Path
    site: Path
    data: Path
    secret_key: str
    max_upload_bytes: int = 5 * 1024**3
    # When set, downloads are handed to nginx with X-Accel-Redirect under this internal prefix
    # (for example "/_depot_site/") instead of being streamed by Python.
    accel_redirect_prefix: str = ""

    @classmethod
    def from_folders(cls, repo: Path, site: Path, data: Path) -> RuntimeConfig:
        data.mkdir(parents=True, exist_ok=True)
        return cls(
            repo=repo.resolve(),
            site=site.resolve(),
            data=data.resolve(),
            secret_key=load_secret_key(data),
            accel_redirect_prefix=os.environ.get("DEPOT_ACCEL_REDIRECT", ""),
        )


def load_secret_key(data: Path) -> str:
    """``DEPOT_SECRET_KEY`` if set, else a key generated once and kept in the data folder.

    Several runtime processes behind one load balancer must share the key: set the variable,
    or share the data folder."""
    from_env = os.environ.get("DEPOT_SECRET_KEY")
    if from_env:
        return from_env
    path = data / SECRET_FILE
    if not path.exists():
        # Written to a temporary file, then linked into place: link() fails if the name exists,
        # so of two processes starting at once on an empty data folder exactly one key wins and
        # both read it.
        tmp = write_temp(path, secrets.token_urlsafe(48).encode())
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
            fsync_dir(data)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
