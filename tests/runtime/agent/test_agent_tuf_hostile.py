"""Hostile tests of the agent as a TUF client, in-process: ``fetch_index`` and the Agent's
start-up against a store the test controls. Tests named ``test_bug_*`` expose a fault; the
others document what held."""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from builder.build import build
from builder.trust.keys import init_keys
from runtime.agent.config import AgentConfig
from runtime.agent.index import Package, Release, StoreIndex, StoreIndexError, _signed_releases, fetch_index
from tests.support.repos import copy_demo

Answer = tuple[int, dict[str, str], bytes] | None


class Store:
    """A site served over HTTP, with ``hook(path) -> (status, headers, body)`` to answer a path
    otherwise (None: the site's file)."""

    def __init__(self, site: Path) -> None:
        self.site = site
        self.hook: Callable[[str], Answer] = lambda path: None
        self.requests: list[str] = []
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = unquote(urlsplit(self.path).path).lstrip("/")
                store.requests.append(path)
                answer = store.hook(path)
                if answer is None:
                    file = (store.site / path).resolve()
                    ok = file.is_relative_to(store.site.resolve()) and file.is_file()
                    answer = (200, {}, file.read_bytes()) if ok else (404, {}, b"")
                status, headers, body = answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("signed")
    repo, site, keys = copy_demo(base / "repo"), base / "site", base / "keys"
    init_keys(keys)
    build(repo, site, keys=keys)
    return site


@pytest.fixture
def store(built: Path, tmp_path: Path) -> Iterator[Store]:
    site = tmp_path / "site"
    shutil.copytree(built, site)
    s = Store(site)
    try:
        yield s
    finally:
        s.close()


def config(tmp_path: Path, url: str, site: Path, root_bytes: bytes | None = None) -> AgentConfig:
    trusted = tmp_path / "trusted-root.json"
    trusted.write_bytes(root_bytes if root_bytes is not None else (site / "tuf" / "1.root.json").read_bytes())
    return AgentConfig(store=url, root=tmp_path / "device", trusted_root=trusted, timeout=3, platform="pi64")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what held -------------------------------------------------------------------------------------


def test_an_honest_store_verifies(store: Store, tmp_path: Path) -> None:
    index = fetch_index(config(tmp_path, store.url, store.site))
    assert "ax" in index.modules


def pi64_shards(site: Path) -> list[str]:
    entry = json.loads((site / "device/index.json").read_bytes())
    rows = next(p for p in entry["platforms"] if p["name"] == "pi64")["shards"]
    return ["device/" + row["url"] for row in rows]


def test_every_shard_is_fetched_as_a_target(store: Store, tmp_path: Path) -> None:
    shards = pi64_shards(store.site)
    assert len(shards) > 1
    index = fetch_index(config(tmp_path, store.url, store.site))
    assert [path for path in store.requests if path.startswith("device/")] == ["device/index.json", *shards]
    named = {m["name"] for path in shards for m in json.loads((store.site / path).read_bytes())["modules"]}
    assert set(index.modules) == named


def test_a_shard_swapped_on_the_store_is_fetched_again_once_then_refused(
    store: Store, tmp_path: Path
) -> None:
    """Bytes other than the signed metadata states (same length): the whole fetch is tried once
    more with fresh metadata, then refused."""
    shard = pi64_shards(store.site)[0]
    real = (store.site / shard).read_bytes()
    forged = real.replace(b'"modules"', b'"modulez"')
    assert len(forged) == len(real)
    store.hook = lambda path: (200, {}, forged) if path == shard else None
    cfg = config(tmp_path, store.url, store.site)
    with pytest.raises(StoreIndexError, match="does not match the store's signed metadata"):
        fetch_index(cfg)
    assert store.requests.count(shard) == 2
    assert store.requests.count("tuf/timestamp.json") == 2
    assert not cfg.index_cache.exists()


def test_an_entry_published_meanwhile_is_fetched_again(store: Store, tmp_path: Path) -> None:
    """The entry's bytes disagree with the metadata once (a build published in between): the
    second try, with fresh metadata, verifies."""
    first = True

    def once(path: str) -> Answer:
        nonlocal first
        if path == "device/index.json" and first:
            first = False
            return (200, {}, b'{"schema": 2, "platforms": []}')
        return None

    store.hook = once
    index = fetch_index(config(tmp_path, store.url, store.site))
    assert "ax" in index.modules
    assert store.requests.count("device/index.json") == 2


@pytest.mark.parametrize(
    "root", [b"", b"garbage", b"{}", b"[]", b'{"signed": {}, "signatures": []}', b"\xff" * 10]
)
def test_a_garbage_trusted_root_is_a_clear_error(store: Store, tmp_path: Path, root: bytes) -> None:
    with pytest.raises(StoreIndexError, match="signed metadata"):
        fetch_index(config(tmp_path, store.url, store.site, root))


def test_a_garbage_local_root_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    cfg = config(tmp_path, store.url, store.site)
    fetch_index(cfg)
    (cfg.tuf / "root.json").write_bytes(b"{truncated")
    with pytest.raises(StoreIndexError):
        fetch_index(cfg)


@pytest.mark.parametrize(("name", "cap"), [("timestamp.json", 16 * 1024), ("1.root.json", 512 * 1024)])
def test_huge_metadata_is_refused_without_reading_it_all(
    store: Store, tmp_path: Path, name: str, cap: int
) -> None:
    huge = b" " * (64 * 1024 * 1024)
    store.hook = lambda path: (200, {}, huge) if path == f"tuf/{name}" else None
    cfg = config(tmp_path, store.url, store.site)
    if name == "1.root.json":
        store.hook = lambda path: (200, {}, huge) if path == "tuf/2.root.json" else None
    started = time.monotonic()
    with pytest.raises(StoreIndexError):
        fetch_index(cfg)
    assert time.monotonic() - started < 10


def test_a_tuf_folder_deleted_while_running_is_bootstrapped_again(store: Store, tmp_path: Path) -> None:
    cfg = config(tmp_path, store.url, store.site)
    fetch_index(cfg)
    shutil.rmtree(cfg.tuf)
    assert "ax" in fetch_index(cfg).modules


def test_releases_the_targets_do_not_name_are_dropped(store: Store, tmp_path: Path) -> None:
    from runtime.agent.trust import TrustedStore

    cfg = config(tmp_path, store.url, store.site)
    real = fetch_index(cfg).modules["ax"].releases[0]
    updater = TrustedStore(cfg.store, cfg.tuf, cfg.trusted_root, cfg.origins, cfg.timeout).refresh()
    rel = real.url[len(store.url) :]
    forged = [
        Release("ax", "9.0.0", store.url + "files/evil.tar.gz", real.size, real.sha256),
        Release(
            "ax", "9.0.1", store.url + "device/index.json", real.size, real.sha256
        ),  # a target, other hash
        Release("ax", "9.0.2", store.url + rel.replace("/", "/./", 1), real.size, real.sha256),
        Release("ax", "9.0.3", store.url + rel + "?x=1", real.size, real.sha256),
        Release("ax", "9.0.4", real.url, real.size + 1, real.sha256),
        Release("ax", "9.0.5", real.url, real.size, "0" * 64),
        Release("ax", "9.0.6", "http://127.0.0.1:1/" + rel, real.size, real.sha256),
        Release("ax", "9.0.7", store.url + "tuf/1.root.json", real.size, real.sha256),
    ]
    index = StoreIndex("pi64", {"ax": Package("ax", "9.0.7", None, "", (*forged, real))}, {})
    kept = _signed_releases(index, cfg, updater)
    assert [r.version for r in kept.modules["ax"].releases] == [real.version]


# -- faults ----------------------------------------------------------------------------------------


def test_an_unreachable_store_is_a_store_index_error(store: Store, tmp_path: Path) -> None:
    """Failures while ngclient iterates a download (the fetcher is a generator) are DownloadErrors,
    so an unreachable store is a StoreIndexError, never a raw httpx error."""
    cfg = config(tmp_path, f"http://127.0.0.1:{free_port()}/", store.site)
    try:
        fetch_index(cfg)
    except StoreIndexError:
        pass
    except Exception as exc:
        pytest.fail(f"an unreachable store with --trusted-root raised {type(exc).__name__}: {exc}")


def test_a_timestamp_redirected_to_another_origin_is_refused(store: Store, tmp_path: Path) -> None:
    """A redirect of a metadata file to another origin is refused as the index's are."""
    store.hook = lambda path: (
        (302, {"Location": "http://127.0.0.2:9/tuf/timestamp.json"}, b"")
        if path == "tuf/timestamp.json"
        else None
    )
    cfg = config(tmp_path, store.url, store.site)
    try:
        fetch_index(cfg)
    except StoreIndexError as exc:
        assert "origin" in str(exc)
    except Exception as exc:
        pytest.fail(f"a redirect of tuf/timestamp.json elsewhere raised {type(exc).__name__}: {exc}")


def test_a_device_without_network_starts_its_agent(store: Store, tmp_path: Path) -> None:
    """A device booting offline with --trusted-root starts and serves the index it has."""
    from runtime.agent.tasks import Agent

    cfg = config(tmp_path, store.url, store.site)
    fetch_index(cfg)  # the device once saw the store
    offline = AgentConfig(
        store=f"http://127.0.0.1:{free_port()}/",
        root=cfg.root,
        trusted_root=cfg.trusted_root,
        timeout=3,
        platform="pi64",
    )
    agent = Agent(offline)
    try:
        agent.start()
    except Exception as exc:
        pytest.fail(f"Agent.start raised {type(exc).__name__}: {exc} with the store unreachable")
    finally:
        agent.stop()
    assert agent.index_error


def test_a_store_closing_the_connection_mid_metadata_is_refused(store: Store, tmp_path: Path) -> None:
    """A truncated answer is a StoreIndexError."""
    store.hook = lambda path: (
        (200, {"Content-Length": "5000"}, b"{") if path == "tuf/timestamp.json" else None
    )
    cfg = config(tmp_path, store.url, store.site)
    try:
        fetch_index(cfg)
    except StoreIndexError:
        pass
    except Exception as exc:
        pytest.fail(f"a truncated timestamp.json raised {type(exc).__name__}: {exc}")


def test_a_tuf_path_that_is_a_file_is_a_store_index_error(store: Store, tmp_path: Path) -> None:
    """A <root>/tuf that is not a folder is a StoreIndexError."""
    cfg = config(tmp_path, store.url, store.site)
    cfg.tuf.parent.mkdir(parents=True, exist_ok=True)
    cfg.tuf.write_bytes(b"")
    try:
        fetch_index(cfg)
    except StoreIndexError:
        pass
    except Exception as exc:
        pytest.fail(f"a file at {cfg.tuf} raised {type(exc).__name__}: {exc}")


def test_a_gzip_bomb_for_metadata_is_refused_without_inflating_it(store: Store, tmp_path: Path) -> None:
    """The agent asks for identity encoding and refuses any other: ngclient's length caps
    count the bytes as they arrive, which bounds memory only if nothing inflates them."""
    import gzip

    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    store.hook = lambda path: (
        (200, {"Content-Encoding": "gzip"}, bomb) if path == "tuf/timestamp.json" else None
    )
    cfg = config(tmp_path, store.url, store.site)
    with pytest.raises(StoreIndexError, match="Content-Encoding"):
        fetch_index(cfg)
