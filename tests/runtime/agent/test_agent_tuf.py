"""The agent as a TUF client against a hostile store: a real `depot agent` process trusting the
store's first root, fed by a server the test controls (tests/support/hostile_store.py) that
serves honest builds and then rolled-back, expired, mixed, forged and swapped files. The judge
of each refusal is python-tuf's ngclient inside the agent; the test checks that the agent
refuses, says why (``store_error``, the task log) and keeps what it has installed."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.trust.keys import init_keys, open_keys, rotate
from tests.support.agent import AgentProcess, make_module, wait_for, write_store_settings
from tests.support.hostile_store import HostileStore
from tests.support.serving import depot_command

pytestmark = pytest.mark.slow


class SignedStore:
    """repo/ → site/ signed with a key folder, served by a HostileStore."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.repo, self.site, self.keys = tmp, tmp / "repo", tmp / "site", tmp / "keys"
        write_store_settings(self.repo)
        init_keys(self.keys)
        self.hostile = HostileStore(self.site)

    def build(self) -> None:
        done = subprocess.run(
            depot_command(
                "build", "--repo", str(self.repo), "--site", str(self.site), "--keys", str(self.keys)
            ),
            capture_output=True,
            text=True,
            check=False,
            cwd=self.tmp,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def tuf(self, name: str) -> bytes:
        return (self.site / "tuf" / name).read_bytes()

    def version(self, role: str) -> int:
        """The version of ``role`` the published timestamp leads to."""
        timestamp = json.loads(self.tuf("timestamp.json"))["signed"]
        if role == "timestamp":
            return timestamp["version"]
        snapshot = timestamp["meta"]["snapshot.json"]["version"]
        if role == "snapshot":
            return snapshot
        return json.loads(self.tuf(f"{snapshot}.snapshot.json"))["signed"]["meta"]["targets.json"]["version"]

    def agent(self, name: str = "agent") -> AgentProcess:
        home = self.tmp / name
        home.mkdir(exist_ok=True)
        trusted = home / "trusted-root.json"
        shutil.copyfile(self.site / "tuf" / "1.root.json", trusted)  # the file shipped with the device
        return AgentProcess(home, self.hostile.url, home / "root", "--trusted-root", str(trusted))


def shard_module(site: Path, name: str) -> dict:
    """A pi64 module's line in the shard the site's entry names for it."""
    entry = json.loads((site / "device/index.json").read_bytes())
    rows = next(p for p in entry["platforms"] if p["name"] == "pi64")["shards"]
    modules = [m for row in rows for m in json.loads((site / "device" / row["url"]).read_bytes())["modules"]]
    return next(m for m in modules if m["name"] == name)


def refresh(agent: AgentProcess) -> None:
    assert agent.post("/services/refresh_store").status_code == 200


def store_error(agent: AgentProcess, *needles: str) -> str:
    """Refresh, then wait until the package list reports a refusal containing every needle."""
    refresh(agent)

    def seen() -> str | None:
        response = agent.get("/packages")
        error = response.headers.get("x-store-error", "")
        lines = response.json()
        if error and all(n in error for n in needles):
            assert all(line.get("store_error") for line in lines)
            return error
        return None

    try:
        return wait_for(seen, 20, f"a store_error with {needles}")
    except TimeoutError:
        said = agent.get("/packages").headers.get("x-store-error")
        raise TimeoutError(f"no store_error with {needles}; the agent says {said!r}") from None


def offered(agent: AgentProcess, version: str) -> dict:
    refresh(agent)
    return wait_for(
        lambda: (p := agent.package("ax"))["latest_version"] == version and "store_error" not in p and p,
        20,
        f"ax {version} offered without error",
    )


def install(agent: AgentProcess, version: str) -> None:
    task = agent.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]
    assert task["version"] == version
    assert agent.wait_task("download", task["task_id"])["status"] == "succeeded"
    assert "signed metadata: files/" in agent.log_text("download", task["task_id"])
    done = agent.post("/services/install_packages", {"packages": ["ax"]}).json()["ax"]
    assert agent.wait_task("install", done["task_id"])["status"] == "succeeded"


def resigned(data: bytes, change, signers) -> bytes:
    """Metadata ``data`` changed by ``change(signed)`` and signed by ``signers`` only."""
    from tuf.api.metadata import Metadata

    md = Metadata.from_bytes(data)
    change(md.signed)
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes()


def test_the_agent_refuses_every_attack_and_keeps_what_it_installed(tmp_path: Path) -> None:
    from securesystemslib.signer import CryptoSigner

    store = SignedStore(tmp_path)
    make_module(store.repo, "ax", "1.0")
    store.build()
    timestamp_a = store.tuf("timestamp.json")
    with store.hostile.running():
        agent = store.agent().start()
        try:
            assert offered(agent, "1.0")["current_version"] == ""
            install(agent, "1.0")

            make_module(store.repo, "ax", "2.0")
            store.build()
            assert offered(agent, "2.0")["current_version"] == "1.0"

            # Rollback: yesterday's timestamp, properly signed, naming yesterday's snapshot.
            store.hostile.overrides = {"tuf/timestamp.json": timestamp_a}
            store_error(agent, "BadVersionNumberError")
            view = agent.package("ax")
            assert (view["current_version"], view["latest_version"]) == ("1.0", "2.0")
            # A download asked for meanwhile is refused too, and its log says why.
            task = agent.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]
            failed = agent.wait_task("download", task["task_id"])
            assert failed["status"] == "failed"
            log = agent.log_text("download", task["task_id"])
            assert "the store's signed metadata is refused" in log and "BadVersionNumberError" in log
            assert agent.package("ax")["current_version"] == "1.0"

            # A new build, which the attacker mixes with the previous one.
            store.hostile.overrides = {}
            snapshot_b = store.tuf(f"{store.version('snapshot')}.snapshot.json")
            targets_b = store.tuf(f"{store.version('targets')}.targets.json")
            make_module(store.repo, "ax", "2.1")
            store.build()
            snapshot_c, targets_c = store.version("snapshot"), store.version("targets")
            assert snapshot_c > 1 and targets_c > 1
            store.hostile.overrides = {f"tuf/{snapshot_c}.snapshot.json": snapshot_b}
            store_error(agent, "the store's signed metadata is refused")
            store.hostile.overrides = {f"tuf/{targets_c}.targets.json": targets_b}
            store_error(agent, "the store's signed metadata is refused")

            # Targets re-signed by a key the root does not name: the snapshot's hash of the
            # targets file catches it first; a timestamp signed by such a key fails its signature.
            intruder = CryptoSigner.generate_ed25519()
            forged = resigned(store.tuf(f"{targets_c}.targets.json"), lambda s: None, [intruder])
            store.hostile.overrides = {f"tuf/{targets_c}.targets.json": forged}
            store_error(agent, "the store's signed metadata is refused")

            def newer(signed) -> None:
                signed.version += 1

            forged = resigned(store.tuf("timestamp.json"), newer, [intruder])
            store.hostile.overrides = {"tuf/timestamp.json": forged}
            store_error(agent, "UnsignedMetadataError")
            assert agent.package("ax")["current_version"] == "1.0"

            # The honest store again: everything verifies.
            store.hostile.overrides = {}
            assert offered(agent, "2.1")["current_version"] == "1.0"

            # A swapped package file: the bytes disagree with the signed length and hash.
            newest = shard_module(store.site, "ax")["versions"][0]
            swapped = (store.site / "device/pi64" / newest["url"]).resolve().relative_to(store.site.resolve())
            # Same length, other bytes: only the SHA-256 tells them apart.
            store.hostile.overrides = {swapped.as_posix(): b"\x1f\x8b" + b"e" * (newest["size"] - 2)}
            task = agent.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]
            assert task["version"] == "2.1"
            failed = agent.wait_task("download", task["task_id"])
            assert failed["status"] == "failed"
            assert "checksum mismatch" in agent.log_text("download", task["task_id"])
            assert agent.package("ax")["current_version"] == "1.0"

            # Freeze: the store goes on serving a timestamp that has expired.
            past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)

            def expire(signed) -> None:
                signed.version += 1
                signed.expires = past.replace(microsecond=0)

            signers = open_keys(store.keys).signers("timestamp")
            store.hostile.overrides = {
                "tuf/timestamp.json": resigned(store.tuf("timestamp.json"), expire, signers)
            }
            store_error(agent, "ExpiredMetadataError")
            view = agent.package("ax")
            assert (view["current_version"], view["latest_version"]) == ("1.0", "2.1")
            assert agent.process is not None and agent.process.poll() is None
        finally:
            agent.stop()


def test_rotations_of_root_and_targets_keys_are_followed(tmp_path: Path) -> None:
    store = SignedStore(tmp_path)
    make_module(store.repo, "ax", "1.0")
    store.build()
    with store.hostile.running():
        agent = store.agent().start()
        try:
            offered(agent, "1.0")
            rotate(store.keys, "targets")
            make_module(store.repo, "ax", "1.1")
            store.build()
            offered(agent, "1.1")
            rotate(store.keys, "root")
            make_module(store.repo, "ax", "1.2")
            store.build()
            offered(agent, "1.2")
            trusted = json.loads((agent.root / "tuf" / "root.json").read_bytes())["signed"]
            assert trusted["version"] == 3

            # After a restart the verified chain is the trust, not the shipped 1.root.json.
            agent.stop()
            agent.start()
            offered(agent, "1.2")

            # A next root signed only by keys the current root does not name is refused.
            from securesystemslib.signer import CryptoSigner

            intruder = CryptoSigner.generate_ed25519()

            def take_over(signed) -> None:
                signed.version = 4
                for role in ("root", "targets", "snapshot", "timestamp"):
                    for keyid in list(signed.roles[role].keyids):
                        signed.revoke_key(keyid, role)
                    signed.add_key(intruder.public_key, role)

            store.hostile.overrides = {
                "tuf/4.root.json": resigned(store.tuf("3.root.json"), take_over, [intruder])
            }
            store_error(agent, "UnsignedMetadataError")
            assert json.loads((agent.root / "tuf" / "root.json").read_bytes())["signed"]["version"] == 3
        finally:
            agent.stop()
