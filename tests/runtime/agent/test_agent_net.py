"""The agent's network rules in isolation: origins, capped and self-decoded reads, redirects,
and the settings that configure them."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from runtime.agent.config import AgentConfig, host_name
from runtime.agent.net import ForeignOriginError, Origins, TooLargeError, open_get, origin_of, read_capped
from runtime.cli import main


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("HTTP://Store.Example/x/", "http://store.example:80"),
        ("http://store.example:80/", "http://store.example:80"),
        ("https://store.example/", "https://store.example:443"),
        ("https://store.example.:8443/a?b", "https://store.example:8443"),
        ("http://[::1]:8090/", "http://[::1]:8090"),
        ("http://user:pw@evil.example/", "http://evil.example:80"),
        ("ftp://store.example/", None),
        ("file:///etc/passwd", None),
        ("/relative", None),
    ],
)
def test_origin_of(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_origins_allow_the_store_and_mirrors_only() -> None:
    origins = Origins("https://store.example/base/", ["http://cdn.example:8080/any/path"])
    assert origins.allows("https://store.example/other/file.tar.gz")
    assert origins.allows("https://STORE.example:443/x")
    assert origins.allows("http://cdn.example:8080/y")
    for url in (
        "http://store.example/x",  # another scheme is another origin
        "https://store.example:8443/x",
        "https://store.example.evil.example/x",
        "https://store.example@evil.example/x",
        "http://cdn.example/y",
        "file:///etc/passwd",
    ):
        assert not origins.allows(url), url
    with pytest.raises(ForeignOriginError, match="not on the store's origin or a mirror"):
        origins.check("https://evil.example/x")
    with pytest.raises(ValueError, match="not an http"):
        Origins("ftp://store.example/")


class Chunks(httpx.SyncByteStream):
    """A body arriving in 64 KiB pieces, as from a socket (and not read ahead by httpx)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), 1 << 16):
            yield self.body[start : start + (1 << 16)]


def response(body: bytes, **headers: str | None) -> httpx.Response:
    """A streamed answer; header names with ``_`` for ``-``, None leaves Content-Length out."""
    given = {"Content-Length": str(len(body)), **{k.replace("_", "-"): v for k, v in headers.items()}}
    sent = {k: v for k, v in given.items() if v is not None}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=Chunks(body), headers=sent))
    client = httpx.Client(transport=transport)
    return client.send(client.build_request("GET", "http://store.example/"), stream=True)


def bomb(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join([packer.compress(bytes(1 << 20)) for _ in range(size >> 20)] + [packer.flush()])


def test_read_capped_decodes_gzip_itself_within_the_cap() -> None:
    data = b'{"platforms": []}' * 100
    assert read_capped(response(gzip.compress(data), content_encoding="gzip"), len(data), "x") == data
    assert read_capped(response(data), len(data), "x") == data
    with pytest.raises(TooLargeError, match="inflates past the limit of 1000 bytes"):
        read_capped(response(gzip.compress(data), content_encoding="gzip"), 1000, "x")
    with pytest.raises(TooLargeError, match="inflates past the limit of 1048576 bytes"):
        read_capped(response(bomb(64 << 20), content_encoding="gzip"), 1 << 20, "x")
    with pytest.raises(TooLargeError, match="more than the limit of 100"):
        read_capped(response(data), 100, "x")  # Content-Length says so
    with pytest.raises(TooLargeError, match="sends more than the limit of 10 bytes"):
        body = response(bomb(1 << 20), content_encoding="gzip", Content_Length=None)
        read_capped(body, 1 << 21, "x", received_limit=10)
    with pytest.raises(TooLargeError, match="truncated gzip"):
        read_capped(response(gzip.compress(data)[:-12], content_encoding="gzip"), 1 << 20, "x")
    with pytest.raises(TooLargeError, match="not valid gzip"):
        read_capped(response(b"not gzip at all", content_encoding="gzip"), 1 << 20, "x")
    with pytest.raises(TooLargeError, match="only gzip is accepted"):
        read_capped(response(data, content_encoding="br"), 1 << 20, "x")


def test_open_get_follows_redirects_only_within_the_origins() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        path = request.url.path
        if path == "/same":
            return httpx.Response(302, headers={"Location": "/final"})
        if path == "/away":
            return httpx.Response(307, headers={"Location": "http://evil.example/final"})
        if path == "/loop":
            return httpx.Response(302, headers={"Location": "/loop"})
        return httpx.Response(200, content=b"ok")

    client = httpx.Client(transport=httpx.MockTransport(answer))
    origins = Origins("http://store.example/")
    with open_get(client, "http://store.example/same", origins) as r:
        assert r.read() == b"ok"
    assert seen == ["http://store.example/same", "http://store.example/final"]
    seen.clear()
    with (
        pytest.raises(ForeignOriginError, match="another origin"),
        open_get(client, "http://store.example/away", origins),
    ):
        pass
    assert seen == ["http://store.example/away"]  # evil.example was never asked
    with (
        pytest.raises(ForeignOriginError, match="more than 5 times"),
        open_get(client, "http://store.example/loop", origins),
    ):
        pass
    seen.clear()
    with pytest.raises(ForeignOriginError), open_get(client, "http://evil.example/x", origins):
        pass
    assert seen == []


def test_settings_are_checked(tmp_path: Path) -> None:
    assert host_name("Robot.LAN.") == "robot.lan"
    assert host_name("[::1]") == "::1"
    assert host_name("robot:8090") is None
    config = AgentConfig(
        store="http://s/", root=tmp_path, allowed_hosts=("Robot.Lan",), inbox=tmp_path / "a/../in"
    )
    assert config.allowed_hosts == ("robot.lan",) and config.inbox == tmp_path / "in"
    assert AgentConfig(store="http://s/", root=tmp_path).inbox == tmp_path.resolve() / "inbox"
    with pytest.raises(ValueError, match="--allowed-host"):
        AgentConfig(store="http://s/", root=tmp_path, allowed_hosts=("robot:8090",))
    for args in (
        ["--store", "ftp://store.example/"],
        ["--store", "http://s/", "--mirror", "file:///tmp"],
        ["--store", "http://s/", "--allowed-host", "a b"],
    ):
        result = CliRunner().invoke(main, ["agent", "--root", str(tmp_path / "root"), *args])
        assert result.exit_code == 2, result.output
        assert "not" in result.output
