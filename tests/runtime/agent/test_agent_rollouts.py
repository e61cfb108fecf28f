"""Staged rollouts decided on the device: real `depot agent` processes with distinct device ids
and groups against one real `depot serve` store.

The expectations are computed here from the rule as docs/device-index.md states it (the first 8
bytes of SHA-256 of "<id>\\0<name>\\0<version>" over 2**64, below the share), not through the
agent's code."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import pytest

from builder.sidecars import write_sidecar
from runtime.agent.index import parse_platform_index
from runtime.agent.rollout import Rule, offered, position
from tests.support.agent import agent_process, make_module, wait_for, write_store_settings
from tests.support.serving import depot_command, serve_store


def documented_position(device: str, name: str, version: str) -> float:
    return int.from_bytes(hashlib.sha256(f"{device}\0{name}\0{version}".encode()).digest()[:8], "big") / 2**64


def devices_around(share: float, name: str, version: str) -> tuple[str, str]:
    """A device id inside the share and one outside, by the documented rule."""
    inside = next(
        f"robot-{i}" for i in range(1000) if documented_position(f"robot-{i}", name, version) < share
    )
    outside = next(
        f"robot-{i}" for i in range(1000) if documented_position(f"robot-{i}", name, version) >= share
    )
    return inside, outside


# -- the rule ------------------------------------------------------------------------------------


def test_position_is_the_documented_hash() -> None:
    rng = random.Random(14)
    for _ in range(300):
        device = f"d-{rng.getrandbits(40):x}"
        version = f"{rng.randrange(5)}.{rng.randrange(20)}"
        assert position(device, "ax", version) == documented_position(device, "ax", version)


def test_widening_the_share_never_takes_an_offer_back_and_shares_are_fair() -> None:
    devices = [f"robot-{i}" for i in range(4000)]
    previous: set[str] = set()
    for share in (0.0, 0.01, 0.1, 0.25, 0.5, 0.9, 1.0):
        rule = Rule(share=share)
        now = {d for d in devices if offered(rule, d, (), "ax", "2.0")}
        assert previous <= now
        assert abs(len(now) / len(devices) - share) < 0.03  # uniform: about the share of devices
        previous = now
    assert previous == set(devices)
    assert not any(offered(Rule(share=1.0, paused=True), d, (), "ax", "2.0") for d in devices[:200])


def test_groups_and_independent_versions() -> None:
    beta = Rule(share=1.0, groups=("beta",))
    assert offered(beta, "r1", ("beta", "lab"), "ax", "2.0")
    assert not offered(beta, "r1", ("lab",), "ax", "2.0")
    assert not offered(beta, "r1", (), "ax", "2.0")
    # a device in one version's 10 % is not therefore in the next version's 10 %
    devices = [f"robot-{i}" for i in range(2000)]
    first = {d for d in devices if offered(Rule(0.1), d, (), "ax", "2.0")}
    second = {d for d in devices if offered(Rule(0.1), d, (), "ax", "2.1")}
    assert len(first & second) < len(first) / 2


@pytest.mark.parametrize(
    "rollout",
    [
        "yes",
        {"share": 2},
        {"share": -0.1},
        {"share": True},
        {"share": 0.5, "groups": "beta"},
        {"share": 0.5, "groups": [1]},
        {"share": 0.5, "paused": "no"},
    ],
)
def test_a_malformed_rule_offers_the_version_to_nobody(rollout: object) -> None:
    entry = {"name": "ax", "versions": [
        {"version": "2.0", "url": "a.tar.gz", "size": 1, "sha256": "a" * 64, "rollout": rollout},
        {"version": "1.0", "url": "b.tar.gz", "size": 1, "sha256": "b" * 64},
    ]}  # fmt: skip
    index = parse_platform_index({"modules": [entry]}, "http://s/device/pi64/5.0123456789abcdef.json", "pi64")
    assert [r.version for r in index.modules["ax"].releases] == ["1.0"]


# -- end to end ----------------------------------------------------------------------------------


def rebuild(store) -> None:
    done = subprocess.run(
        depot_command("build", "--repo", str(store.repo), "--site", str(store.site)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def set_rollout(store, version: str, **fields: object) -> None:
    write_sidecar(store.repo / "modules" / f"ax.{version}.pi64.tar.gz", fields, kind="module")
    rebuild(store)


def refreshed(agent, expected_latest: str) -> dict:
    agent.post("/services/refresh_store")
    return wait_for(
        lambda: (p := agent.package("ax"))["latest_version"] == expected_latest and p,
        20,
        f"{agent.url} to offer ax {expected_latest}",
    )


def test_a_staged_rollout_across_several_agents(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_store_settings(repo)
    make_module(repo, "ax", "1.0")
    make_module(repo, "ax", "2.0")
    inside, outside = devices_around(0.3, "ax", "2.0")
    write_sidecar(repo / "modules" / "ax.2.0.pi64.tar.gz", {"rollout": 0.3}, kind="module")
    make_module(repo, "ax", "3.0")
    write_sidecar(repo / "modules" / "ax.3.0.pi64.tar.gz", {"groups": ["beta"]}, kind="module")
    for name in "abc":
        (tmp_path / name).mkdir()
    with (
        serve_store(tmp_path, repo=repo) as store,
        agent_process(tmp_path / "a", store.url, tmp_path / "a" / "root", "--device-id", inside) as a,
        agent_process(tmp_path / "b", store.url, tmp_path / "b" / "root", "--device-id", outside) as b,
        agent_process(
            tmp_path / "c", store.url, tmp_path / "c" / "root", "--device-id", outside, "--groups", "beta,lab"
        ) as c,
    ):
        # Same index, three answers: in the share, out of it, in the beta group.
        assert a.package("ax")["latest_version"] == "2.0"
        assert b.package("ax")["latest_version"] == "1.0"
        assert c.package("ax")["latest_version"] == "3.0"

        # The device inside installs 2.0; one outside is refused the version it is not offered.
        task = a.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]
        assert task["version"] == "2.0"
        assert a.wait_task("download", task["task_id"])["status"] == "succeeded"
        install = a.post("/services/install_packages", {"packages": ["ax"]}).json()["ax"]
        assert a.wait_task("install", install["task_id"])["status"] == "succeeded"
        assert a.package("ax")["current_version"] == "2.0"

        # Widening to everybody reaches the device outside; it never took an offer back.
        set_rollout(store, "2.0", rollout=1.0)
        assert refreshed(b, "2.0")["status"] == "not_installed"
        assert refreshed(a, "2.0")["status"] == "up_to_date"

        # Share 0 stops the rollout: a device that has 2.0 keeps it, one that has not is not offered it.
        set_rollout(store, "2.0", rollout=0.0)
        b_view = refreshed(b, "1.0")
        a_view = a.package("ax")
        assert a_view["current_version"] == "2.0" and a_view["status"] == "up_to_date"
        assert b_view["current_version"] == ""
        refused = b.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]
        assert refused["version"] == "1.0"

        # A pause works the same, and resuming gives the offers back.
        set_rollout(store, "3.0", groups=["beta"], paused=True)
        assert refreshed(c, "1.0")["latest_version"] == "1.0"
        set_rollout(store, "3.0", groups=["beta"])
        assert refreshed(c, "3.0")["latest_version"] == "3.0"


@pytest.mark.parametrize("value", ["ax\n", "1.0\n"])
def test_names_versions_and_device_ids_never_end_in_a_newline(value: str, tmp_path: Path) -> None:
    """`$` matches before a final newline; the agent's shapes are checked whole (fullmatch)."""
    from runtime.agent.config import AgentConfig, valid_name, valid_version

    assert not valid_name(value) and not valid_version(value)
    with pytest.raises(ValueError, match="device-id"):
        AgentConfig(store="http://127.0.0.1:9/", root=tmp_path, device_id=value)
