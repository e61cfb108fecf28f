"""Hostile stores (issue 12, item 9): the agent bounds what it reads and where it connects.

A scripted store on 127.0.0.1 answers gzip bombs, index entries and redirects that point at
another origin (another port on 127.0.0.1, or 127.0.0.2), shards that disagree with the entry,
entries listing too many shards or of a schema the agent does not know. The other origin is a
scripted server too that counts its requests: it must get none. A real `depot agent` process
keeps its last good index, reports the error, and its peak memory (VmHWM) stays far below what
the bombs inflate to; the cases that count requests or bytes precisely call ``fetch_index``
in-process. The store is hand-written (tests/support/agent.py ``device_index``): an honest one
in the builder's layout (schema 2, or an older Depot's schema 1), then forged.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from builder.device.module import pack_module
from runtime.agent.config import MAX_SHARDS, AgentConfig
from runtime.agent.index import StoreIndexError, cached_index, fetch_index
from tests.support.agent import (
    AgentProcess,
    ScriptedServer,
    agent_process,
    device_index,
    serve_device_index,
    wait_for,
)
from tests.support.serving import serve_app

MiB = 1024 * 1024
ENTRY_CAP, PLATFORM_CAP = 1 * MiB, 32 * MiB


def gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes gzip-compressed (300 MiB → about 300 KB), built a MiB at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    out = [packer.compress(block) for _ in range(size // MiB)]
    return b"".join([*out, packer.flush()])


def gzipped(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = gzip_bomb(300 * MiB)
    assert len(data) < 400_000
    return data


def module_bytes(tmp: Path, name: str) -> bytes:
    return pack_module(tmp / "built" / f"{name}.1.0.pi64.tar.gz", {"VERSION": name.encode()}).read_bytes()


def shard_row(url: str, size: int, sha256: str, bucket: str = "5") -> dict[str, Any]:
    return {"shard": bucket, "url": url, "size": size, "sha256": sha256}


def entry_for(*rows: dict[str, Any], schema: int = 2) -> bytes:
    """A forged entry: the pi64 line with ``rows`` as its shards."""
    return json.dumps({"schema": schema, "platforms": [{"name": "pi64", "shards": list(rows)}]}).encode()


def schema1_entry_for(platform_url: str, size: int, sha256: str) -> bytes:
    """A forged entry of an older Depot (schema 1, without the field, as the first ones)."""
    return json.dumps(
        {"platforms": [{"name": "pi64", "url": platform_url, "size": size, "sha256": sha256}]}
    ).encode()


def only(files: dict[str, bytes]) -> tuple[str, bytes]:
    """The one shard of a one-module index: its site path and bytes."""
    assert len(files) == 1
    return next(iter(files.items()))


def config(url: str, tmp: Path, **caps: int) -> AgentConfig:
    return AgentConfig(store=url, root=tmp / "device", timeout=5, **caps)  # type: ignore[arg-type]


@pytest.fixture
def servers() -> Iterator[tuple[ScriptedServer, ScriptedServer, ScriptedServer]]:
    """The store, another port on 127.0.0.1, and 127.0.0.2."""
    made = [ScriptedServer(), ScriptedServer(), ScriptedServer("127.0.0.2")]
    try:
        yield made[0], made[1], made[2]
    finally:
        for server in made:
            server.close()


def refreshed_with(agent: AgentProcess, words: str) -> None:
    """Ask for a refresh and wait until the agent reports an index error containing ``words``."""
    before = agent.log.read_text(errors="replace").count(words)
    assert agent.post("/services/refresh_store").status_code == 200
    wait_for(lambda: agent.log.read_text(errors="replace").count(words) > before, what=repr(words))


def test_gzip_bombs_are_cut_off_and_the_last_good_index_is_kept(
    servers: tuple[ScriptedServer, ScriptedServer, ScriptedServer], bomb: bytes, tmp_path: Path
) -> None:
    store = servers[0]
    ax = module_bytes(tmp_path, "ax")
    entry, files = device_index({"ax": ax})
    path, shard = only(files)
    url = path.removeprefix("device/")
    serve_device_index(store, entry, files)
    with agent_process(tmp_path, store.url, tmp_path / "root") as agent:
        assert set(agent.packages()) == {"ax"}
        good_hwm = agent.vm_hwm()

        # the shard inflates to 300 MiB; the entry states its real size
        store.serve("/" + path, bomb, Content_Encoding="gzip")
        refreshed_with(agent, f"inflates past the limit of {len(shard)} bytes")
        # the entry states 32 MiB (the cap) for it: reading stops there
        sized = entry_for(shard_row(url, PLATFORM_CAP, hashlib.sha256(b"").hexdigest()))
        store.serve("/device/index.json", sized)
        refreshed_with(agent, f"inflates past the limit of {PLATFORM_CAP} bytes")
        # ... or more than the cap: not even fetched
        requests = len(store.requests)
        store.serve("/device/index.json", entry_for(shard_row(url, 300 * MiB, "0" * 64)))
        refreshed_with(agent, f"more than the limit of {PLATFORM_CAP}")
        assert store.requests[requests:] == ["/device/index.json"]
        # ... and so are sixteen shards that together state more than the cap
        rows = [shard_row(f"pi64/{b:x}.json", PLATFORM_CAP // 16 + 1, "0" * 64, f"{b:x}") for b in range(16)]
        requests = len(store.requests)
        store.serve("/device/index.json", entry_for(*rows))
        refreshed_with(agent, f"in 16 shards, more than the limit of {PLATFORM_CAP}")
        assert store.requests[requests:] == ["/device/index.json"]
        # the entry itself is a bomb, or simply too big
        store.serve("/device/index.json", bomb, Content_Encoding="gzip")
        refreshed_with(agent, f"inflates past the limit of {ENTRY_CAP} bytes")
        store.serve("/device/index.json", b" " * (2 * MiB))
        refreshed_with(agent, f"is {2 * MiB} bytes, more than the limit of {ENTRY_CAP}")
        store.serve("/device/index.json", b" " * (2 * MiB), Content_Length=None)  # ended by closing
        refreshed_with(agent, f"sends more than the limit of {ENTRY_CAP} bytes")
        # an encoding the agent did not ask for
        store.serve("/device/index.json", entry, Content_Encoding="br")
        refreshed_with(agent, "only gzip is accepted")

        assert set(agent.packages()) == {"ax"}  # the last index that verified
        assert agent.package("ax")["latest_version"] == "1.0"
        hwm = agent.vm_hwm()
        assert hwm < 150 * MiB, (good_hwm, hwm)

        # an honest gzip-encoded shard is read as before
        serve_device_index(store, entry, files)
        store.serve("/" + path, gzipped(shard), Content_Encoding="gzip")
        store.requests.clear()
        assert agent.post("/services/refresh_store").status_code == 200
        wait_for(lambda: "/" + path in store.requests, what="refresh")
    assert "Traceback" not in agent.log.read_text(errors="replace")


@pytest.mark.parametrize("other_index", [1, 2], ids=["another-port", "another-host"])
def test_an_entry_pointing_at_another_origin_is_not_followed(
    servers: tuple[ScriptedServer, ScriptedServer, ScriptedServer], other_index: int, tmp_path: Path
) -> None:
    store, other = servers[0], servers[other_index]
    modules = {"ax": module_bytes(tmp_path, "ax"), "bx": module_bytes(tmp_path, "bx")}
    _entry, files = device_index(modules)
    by_bucket = {path.split("/")[-1][0]: (path, body) for path, body in files.items()}
    (ax_path, ax_shard), (bx_path, bx_shard) = by_bucket["5"], by_bucket["3"]
    for path, body in files.items():  # valid shards, with the checksums the entry states
        store.serve("/" + path, body)
        other.serve("/" + path, body)
    # bx's shard (bucket 3) is on the store, ax's (bucket 5) elsewhere: neither is fetched
    entry = entry_for(
        shard_row(bx_path.removeprefix("device/"), len(bx_shard), hashlib.sha256(bx_shard).hexdigest(), "3"),
        shard_row(f"{other.url}{ax_path}", len(ax_shard), hashlib.sha256(ax_shard).hexdigest()),
    )
    store.serve("/device/index.json", entry)
    with agent_process(tmp_path, store.url, tmp_path / "root") as agent:
        assert agent.packages() == {}
        wait_for(lambda: "is not on the store's origin" in agent.log.read_text(), what="the refusal")
        assert "shard 5 of the pi64 index" in agent.log.read_text()
        assert all(r == "/device/index.json" for r in store.requests), store.requests
        # the same with a redirect of the entry itself
        store.redirect("/device/index.json", f"{other.url}device/index.json")
        other.serve("/device/index.json", entry)
        refreshed_with(agent, "another origin than the store's")
        assert agent.packages() == {}
    assert other.requests == []


def test_modules_on_another_origin_are_dropped_unless_it_is_a_mirror(
    servers: tuple[ScriptedServer, ScriptedServer, ScriptedServer], tmp_path: Path
) -> None:
    store, _port, other = servers
    ax, bx = module_bytes(tmp_path, "ax"), module_bytes(tmp_path, "bx")
    urls = {"ax": f"{other.url}files/ax.1.0.pi64.tar.gz", "bx": "../../files/bx.1.0.pi64.tar.gz"}
    serve_device_index(store, *device_index({"ax": ax, "bx": bx}, url_of=urls.__getitem__))
    store.serve("/files/bx.1.0.pi64.tar.gz", bx)
    other.serve("/files/ax.1.0.pi64.tar.gz", ax)
    with agent_process(tmp_path, store.url, tmp_path / "root") as agent:
        assert set(agent.packages()) == {"bx"}  # ax's only version is elsewhere: skipped
        answer = agent.post("/services/download_packages", {"packages": ["ax"]})
        assert answer.status_code == 400
    assert other.requests == []
    with agent_process(tmp_path, store.url, tmp_path / "mirrored", "--mirror", other.url) as agent:
        assert set(agent.packages()) == {"ax", "bx"}
        task = agent.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]["task_id"]
        assert agent.wait_task("download", task)["status"] == "succeeded"
    assert other.requests == ["/files/ax.1.0.pi64.tar.gz"]


def test_redirects_are_followed_only_within_the_allowed_origins(
    servers: tuple[ScriptedServer, ScriptedServer, ScriptedServer], tmp_path: Path
) -> None:
    store, port_other, host_other = servers
    modules = {name: module_bytes(tmp_path, name) for name in ("ax", "bx", "cx", "dx")}
    serve_device_index(store, *device_index(modules))
    store.redirect("/files/ax.1.0.pi64.tar.gz", f"{port_other.url}files/ax.1.0.pi64.tar.gz")
    store.redirect("/files/bx.1.0.pi64.tar.gz", f"{host_other.url}files/bx.1.0.pi64.tar.gz", status=307)
    store.redirect("/files/cx.1.0.pi64.tar.gz", "/real/cx.1.0.pi64.tar.gz", status=301)  # same origin
    store.serve("/real/cx.1.0.pi64.tar.gz", modules["cx"])
    store.redirect("/files/dx.1.0.pi64.tar.gz", "/files/dx.1.0.pi64.tar.gz")  # a loop
    for other in (port_other, host_other):
        for name, data in modules.items():
            other.serve(f"/files/{name}.1.0.pi64.tar.gz", data)
    with agent_process(tmp_path, store.url, tmp_path / "root") as agent:
        answer = agent.post("/services/download_packages", {"packages": list(modules)})
        assert answer.status_code == 201, answer.text
        final = {name: agent.wait_task("download", t["task_id"]) for name, t in answer.json().items()}
        assert {name: t["status"] for name, t in final.items()} == {
            "ax": "failed",
            "bx": "failed",
            "cx": "succeeded",
            "dx": "failed",
        }
        for name in ("ax", "bx"):
            reason = agent.package(name)["failed_reason"]
            assert "another origin than the store's" in reason and "not followed" in reason, reason
            assert "retrying" not in agent.log_text("download", final[name]["id"])  # refused at once
        assert "redirects more than 5 times" in agent.package("dx")["failed_reason"]
        assert (tmp_path / "root/downloads/module/cx/cx.1.0.tar.gz").read_bytes() == modules["cx"]
    assert port_other.requests == [] and host_other.requests == []

    # a configured mirror may be redirected to
    with agent_process(tmp_path, store.url, tmp_path / "mirrored", "--mirror", port_other.url) as agent:
        task = agent.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]["task_id"]
        assert agent.wait_task("download", task)["status"] == "succeeded"
    assert port_other.requests == ["/files/ax.1.0.pi64.tar.gz"] and host_other.requests == []
