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


def test_shards_that_disagree_with_the_entry_and_unknown_entries_are_refused(
    servers: tuple[ScriptedServer, ScriptedServer, ScriptedServer], tmp_path: Path
) -> None:
    store = servers[0]
    entry, files = device_index({"ax": module_bytes(tmp_path, "ax")})
    path, shard = only(files)
    serve_device_index(store, entry, files)
    with agent_process(tmp_path, store.url, tmp_path / "root") as agent:
        assert set(agent.packages()) == {"ax"}

        # the same size, other bytes: only the SHA-256 tells them apart
        store.serve("/" + path, shard.replace(b'"ax"', b'"zx"'))
        refreshed_with(agent, f"does not match the size and SHA-256 that {'device/index.json'} states")
        # larger than the entry states: reading stops one byte past it
        store.serve("/" + path, shard + b" " * 4096)
        refreshed_with(agent, f"goes past the limit of {len(shard)} bytes")
        store.serve("/" + path, gzipped(shard + b" " * 4096), Content_Encoding="gzip")
        refreshed_with(agent, f"inflates past the limit of {len(shard)} bytes")
        # an entry listing more shards than any store makes: refused before one is fetched
        store.serve("/" + path, shard)
        row = json.loads(entry)["platforms"][0]["shards"][0]
        requests = len(store.requests)
        store.serve("/device/index.json", entry_for(*[row] * (MAX_SHARDS + 1)))
        refreshed_with(
            agent, f"lists {MAX_SHARDS + 1} shards for the pi64 index, more than the limit of {MAX_SHARDS}"
        )
        assert store.requests[requests:] == ["/device/index.json"]
        # a schema this agent does not know
        store.serve("/device/index.json", json.dumps({**json.loads(entry), "schema": 3}).encode())
        refreshed_with(agent, "the store's device index is schema 3; this agent reads up to 2")

        assert set(agent.packages()) == {"ax"}  # the last index that verified
        assert agent.package("ax")["latest_version"] == "1.0"
    assert "Traceback" not in agent.log.read_text(errors="replace")


def test_a_store_built_by_an_older_depot_is_still_read(
    servers: tuple[ScriptedServer, ScriptedServer, ScriptedServer], tmp_path: Path
) -> None:
    """A schema 1 entry: the platform's line names its one platform index."""
    store = servers[0]
    ax = module_bytes(tmp_path, "ax")
    entry, files = device_index({"ax": ax}, schema=1)
    assert list(files) == ["device/pi64/index.json"]
    serve_device_index(store, entry, files)
    store.serve("/files/ax.1.0.pi64.tar.gz", ax)
    with agent_process(tmp_path, store.url, tmp_path / "root") as agent:
        assert agent.package("ax")["latest_version"] == "1.0"
        task = agent.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]["task_id"]
        assert agent.wait_task("download", task)["status"] == "succeeded"
    assert (tmp_path / "root/downloads/module/ax/ax.1.0.tar.gz").read_bytes() == ax


# -- in-process: what is fetched, how often, how much ------------------------------------------


@pytest.fixture
def store(servers: tuple[ScriptedServer, ScriptedServer, ScriptedServer]) -> ScriptedServer:
    return servers[0]


def four_modules(tmp: Path) -> dict[str, bytes]:
    """Four modules in four buckets (cx 2, bx 3, ax 5, dx 7)."""
    return {name: module_bytes(tmp, name) for name in ("ax", "bx", "cx", "dx")}


def test_a_mismatching_shard_is_fetched_again_once_then_refused(
    store: ScriptedServer, tmp_path: Path
) -> None:
    entry, files = device_index({"ax": module_bytes(tmp_path, "ax")})
    path, shard = only(files)
    serve_device_index(store, entry, files)
    cfg = config(store.url, tmp_path)
    fetch_index(cfg)
    cached = cfg.index_cache.read_bytes()
    store.serve("/" + path, shard.replace(b'"ax"', b'"zx"'))
    store.requests.clear()
    with pytest.raises(StoreIndexError, match="does not match the size and SHA-256"):
        fetch_index(cfg)
    assert store.requests == ["/device/index.json", "/" + path] * 2  # once more, from the entry
    assert cfg.index_cache.read_bytes() == cached  # the last index that verified stays


def test_an_entry_naming_a_shard_that_does_not_match_is_read_again(tmp_path: Path) -> None:
    """What a device sees when the store published between the entry and a shard (or a cache
    in front of it served an older entry): the second entry names shards that match."""
    old_entry, old_files = device_index({"ax": module_bytes(tmp_path, "ax")}, version="1.0")
    entry, files = device_index({"ax": module_bytes(tmp_path, "ax")}, version="2.0")
    (old_path, _old), (path, shard) = only(old_files), only(files)
    served = {"/" + old_path: shard, "/" + path: shard}  # the old name answers other bytes
    entries = [old_entry, entry]
    requests: list[str] = []

    async def answer(request: Request) -> Response:
        requests.append(request.url.path)
        if request.url.path == "/device/index.json":
            return Response(entries[min(requests.count("/device/index.json"), 2) - 1])
        return Response(
            served.get(request.url.path, b""), status_code=200 if request.url.path in served else 404
        )

    with serve_app(Starlette(routes=[Route("/{path:path}", answer)])) as url:
        index = fetch_index(config(url, tmp_path))
    assert index.modules["ax"].latest_version == "2.0"
    assert requests == ["/device/index.json", "/" + old_path, "/device/index.json", "/" + path]


def test_the_bytes_received_for_all_shards_together_are_capped(store: ScriptedServer, tmp_path: Path) -> None:
    """Gzip with junk after its end inflates to the stated bytes; what is received for the
    platform's shards together stays within max_platform_index all the same."""
    entry, files = device_index(four_modules(tmp_path))
    cap = sum(len(body) for body in files.values()) + 100
    store.serve("/device/index.json", entry)
    for path, body in files.items():
        store.serve("/" + path, gzipped(body) + bytes(cap // 2), Content_Encoding="gzip")
    assert set(fetch_index(config(store.url, tmp_path)).modules) == {"ax", "bx", "cx", "dx"}  # 32 MiB
    store.requests.clear()
    with pytest.raises(StoreIndexError, match="more than the limit of"):
        fetch_index(config(store.url, tmp_path, max_platform_index=cap))
    assert len(store.requests) == 3  # the entry, the first shard, and the one past the cap


def test_the_number_of_shards_is_capped_before_any_is_fetched(store: ScriptedServer, tmp_path: Path) -> None:
    entry, files = device_index(four_modules(tmp_path))
    assert len(files) == 4
    serve_device_index(store, entry, files)
    assert len(fetch_index(config(store.url, tmp_path, max_shards=4)).modules) == 4
    store.requests.clear()
    with pytest.raises(StoreIndexError, match="lists 4 shards for the pi64 index, more than the limit of 3"):
        fetch_index(config(store.url, tmp_path, max_shards=3))
    assert store.requests == ["/device/index.json"]


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        (3, "the store's device index is schema 3; this agent reads up to 2"),
        (99, "the store's device index is schema 99; this agent reads up to 2"),
        (0, "states no usable schema"),
        ("2", "states no usable schema"),
        (True, "states no usable schema"),
        (2.0, "states no usable schema"),
    ],
)
def test_an_entry_of_an_unknown_schema_is_refused(
    store: ScriptedServer, tmp_path: Path, schema: object, words: str
) -> None:
    entry, files = device_index({"ax": module_bytes(tmp_path, "ax")})
    serve_device_index(store, json.dumps({**json.loads(entry), "schema": schema}).encode(), files)
    with pytest.raises(StoreIndexError, match=words):
        fetch_index(config(store.url, tmp_path))
    assert store.requests == ["/device/index.json"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"size": None}, "states no size for shard 5"),
        ({"size": -1}, "states no size for shard 5"),
        ({"size": True}, "states no size for shard 5"),
        ({"size": "12"}, "states no size for shard 5"),
        ({"sha256": "0" * 63}, "states no SHA-256 for shard 5"),
        ({"sha256": None}, "states no SHA-256 for shard 5"),
        ({"url": ""}, "states no URL for shard 5"),
        ({"url": ["x"]}, "states no URL for shard 5"),
        ({"url": "javascript:alert(1)"}, "is not on the store's origin"),
        ({"shard": "../../x", "url": "http://127.0.0.2:9/x.json"}, "shard #1 of the pi64 index"),
    ],
)
def test_a_malformed_shard_line_is_refused_before_any_is_fetched(
    store: ScriptedServer, tmp_path: Path, change: dict[str, Any], words: str
) -> None:
    entry, files = device_index({"ax": module_bytes(tmp_path, "ax")})
    data = json.loads(entry)
    data["platforms"][0]["shards"][0].update(change)
    serve_device_index(store, json.dumps(data).encode(), files)
    with pytest.raises(StoreIndexError, match=words.replace("(", r"\(").replace(")", r"\)")):
        fetch_index(config(store.url, tmp_path))
    assert store.requests == ["/device/index.json"]


@pytest.mark.parametrize("shards", [None, "x", {"url": "pi64/5.json"}, ["pi64/5.json"]])
def test_a_platform_line_without_a_list_of_shard_lines_is_refused(
    store: ScriptedServer, tmp_path: Path, shards: object
) -> None:
    store.serve(
        "/device/index.json",
        json.dumps({"schema": 2, "platforms": [{"name": "pi64", "shards": shards}]}).encode(),
    )
    with pytest.raises(StoreIndexError):
        fetch_index(config(store.url, tmp_path))


def test_a_declared_platform_without_shards_is_an_empty_index(store: ScriptedServer, tmp_path: Path) -> None:
    store.serve("/device/index.json", entry_for())
    index = fetch_index(config(store.url, tmp_path))
    assert (index.platform, index.modules, index.firmware) == ("pi64", {}, {})


def test_a_schema_1_entry_is_read_and_cached_as_one_shard(store: ScriptedServer, tmp_path: Path) -> None:
    entry, files = device_index(four_modules(tmp_path), schema=1)
    serve_device_index(store, entry, files)
    cfg = config(store.url, tmp_path)
    index = fetch_index(cfg)
    assert sorted(index.modules) == ["ax", "bx", "cx", "dx"]
    assert index.modules["ax"].releases[0].url == store.url + "files/ax.1.0.pi64.tar.gz"
    cached = json.loads(cfg.index_cache.read_bytes())
    assert [s["url"] for s in cached["shards"]] == [store.url + "device/pi64/index.json"]
    assert cached_index(cfg) == index
    # its size is capped as before
    store.requests.clear()
    store.serve("/device/index.json", schema1_entry_for("pi64/index.json", PLATFORM_CAP + 1, "0" * 64))
    with pytest.raises(
        StoreIndexError, match=f"the pi64 index is {PLATFORM_CAP + 1} bytes, more than the limit"
    ):
        fetch_index(cfg)
    assert store.requests == ["/device/index.json"]
