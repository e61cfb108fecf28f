"""The real shippy client (PyPI shipper-shippy 2.43.0) uploads to a real `depot serve`, run
unattended as the reference's section 2.4 shows. shippy pins its dependencies exactly, so it
lives in its own virtual environment, installed by scripts/setup-shippy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from builder.shipper.ota import checksum_line
from tests.support.paths import PROJECT
from tests.support.serving import ServedStore
from tests.support.shipper import login, ota_zip, sha256, shipper_store

# shippy's own harness: no Sentry, no GitHub update check, answer every prompt with yes.
HARNESS = (
    "import sys, sentry_sdk; sentry_sdk.init = lambda *a, **k: None; "
    "import shippy.__main__ as m; m.check_shippy_update = lambda: None; "
    "sys.argv = ['shippy', '-y']; m.main()"
)
NAME = "Bliss-v15-bullhead-OFFICIAL-vanilla-20210102.zip"


@pytest.fixture(scope="session")
def shippy_python() -> Path:
    done = subprocess.run(
        [str(PROJECT / "scripts/setup-shippy")], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"scripts/setup-shippy failed:\n{done.stdout}\n{done.stderr}"
    return PROJECT / ".venv-shippy/bin/python"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ServedStore:
    # default rate limits: shippy has to live with them, as with shipper's
    with shipper_store(
        tmp_path_factory.mktemp("shippy"), env={"DEPOT_SHIPPER_ANON_RATE": "60/minute"}
    ) as served:
        yield served


def run_shippy(python: Path, home: Path, work: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["HOME"] = str(home)
    return subprocess.run(
        [str(python), "-c", HARNESS],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_shippy_uploads_a_build_then_reports_the_duplicate(
    shippy_python: Path, store: ServedStore, tmp_path: Path
) -> None:
    with store.client() as client:
        auth = login(client)
        token = auth["Authorization"].split()[1]
        home, work = tmp_path / "home", tmp_path / "work"
        home.mkdir()
        work.mkdir()
        (home / ".shippy.ini").write_text(
            f"[shippy]\nserver = {store.url}\ntoken = {token}\n"
            "UploadWithoutPrompt = true\nDisableBuildOnUpload = false\ndebug = false\n"
        )
        data = ota_zip(work / NAME, size=2_200_000, seed="shippy")
        (work / f"{NAME}.sha256sum").write_bytes(checksum_line(sha256(data), NAME))

        first = run_shippy(shippy_python, home, work)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Successfully uploaded the build" in first.stdout
        feed = client.get("/api/v1/updater/los/bullhead/vanilla/").json()["response"]
        entry = next(e for e in feed if e["filename"] == NAME)
        assert (entry["size"], entry["id"], entry["version"]) == (len(data), sha256(data), "v15")
        assert client.get("/api/v1/maintainers/chunked_upload/", headers=auth).json() == []
        download = client.get(entry["url"])
        assert download.content == data

        second = run_shippy(shippy_python, home, work)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "The build already exists in the system!" in second.stdout + second.stderr
        assert client.get("/api/v1/maintainers/chunked_upload/", headers=auth).json() == []
        assert httpx.get(store.url + "/healthz").status_code == 200
