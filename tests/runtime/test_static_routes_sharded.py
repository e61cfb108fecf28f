"""The static mount over a sharded route table (builder.routes): it serves every shard's rows
(a query-string variant and a static 404 body included) and none of the table's own files; a
build that rewrites one shard and the entry is seen on the next request, and only that shard is
read again; a table of schema 1 (one file) still works, and a site without a table has no
routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from builder.routes import ROUTES_FILE, SHARD_FOLDER, bucket_of, route_row, shard_path
from runtime.static import StaticFastPath, StaticSite, site_exists
from tests.support.sharded import (
    FILES,
    ROWS,
    buckets_of,
    make_site,
    publish_schema_1,
    publish_table,
    write_atomic,
)

Mount = tuple[TestClient, StaticSite]
Sharded = tuple[TestClient, StaticSite, Path]


def mount(site: Path) -> Mount:
    """The static mount as the app puts it together: the in-memory fast path in front of the
    endpoint (no dynamic routes)."""
    static = StaticSite(site)
    app = Starlette(routes=[Route("/{path:path}", static.endpoint, methods=["GET", "HEAD"])])
    return TestClient(StaticFastPath(app, static, [])), static


@pytest.fixture
def sharded(tmp_path: Path) -> Iterator[Sharded]:
    site = make_site(tmp_path / "site")
    client, static = mount(site)
    yield client, static, site


@pytest.fixture
def table_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every read of a file of the route table under tmp_path/site, in order."""
    reads: list[str] = []
    real = Path.read_bytes
    root = (tmp_path / "site").resolve()

    def spy(self: Path) -> bytes:
        path = self.resolve()
        if path.is_relative_to(root):
            rel = path.relative_to(root).as_posix()
            if rel == ROUTES_FILE or rel.startswith(SHARD_FOLDER + "/"):
                reads.append(rel)
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", spy)
    return reads


def assert_serves(client: TestClient, rows: list[dict[str, Any]], files: dict[str, bytes] = FILES) -> None:
    for row in rows:
        answer = client.get(row["url"], params=row.get("query"))
        assert answer.status_code == row.get("status", 200), row
        assert answer.content == files[row["file"]], row
        assert answer.headers["content-type"].split(";")[0] == row["type"], row
        immutable = row["file"].startswith("files/")
        cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
        assert answer.headers["cache-control"] == cache, row


def key_of(row: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return row["url"], tuple(sorted((row.get("query") or {}).items()))


def test_every_shard_is_served(sharded: Sharded) -> None:
    client, static, site = sharded
    shards = len(buckets_of(ROWS))
    assert shards >= 5 and len(list((site / SHARD_FOLDER).glob("*.json"))) == shards
    for _twice in range(2):  # read, then from memory
        assert_serves(client, ROWS)
    assert len(static.cache) >= 5  # the fast path answered the small files
    assert client.get("/").content == FILES["index.html"]
    assert client.get("/modules/pi64/").content == FILES["modules/pi64/index.html"]
    assert client.get("/category/list", params={"category_id": "9"}).content == FILES["category/list.json"]
    assert client.head("/search.json").headers["content-length"] == str(len(FILES["search.json"]))
    assert site_exists(site)


def test_the_table_itself_is_not_served(sharded: Sharded) -> None:
    client, _static, site = sharded
    table = [ROUTES_FILE, *(p.relative_to(site).as_posix() for p in (site / SHARD_FOLDER).glob("*.json"))]
    for path in ("/" + rel for rel in table):
        for url in (path, path.removesuffix(".json")):
            answer = client.get(url)
            assert answer.status_code == 404, url
            assert answer.json() == {"detail": "Not Found"}
    assert client.get("/" + SHARD_FOLDER + "/").status_code == 404
    assert client.get("/nope.json").status_code == 404


def other_url_in(bucket: str, prefix: str) -> str:
    return next(url for n in range(10_000) if bucket_of(url := f"{prefix}{n}.json") == bucket)


def test_a_rewritten_shard_is_seen_at_once_and_the_others_are_not_read_again(
    sharded: Sharded, table_reads: list[str]
) -> None:
    client, static, site = sharded
    assert_serves(client, ROWS)
    generation = static.table.generation
    before = {key_of(r): static.table.lookup(r["url"], r.get("query") or {}) for r in ROWS}

    # A build: /search.json now comes from a new file, and a new URL lands in its shard.
    bucket = bucket_of("/search.json")
    added = other_url_in(bucket, "/extra/")
    files = {**FILES, "search.2.json": b'{"modules":["lift"]}\n', "extra.json": b"[]\n"}
    write_atomic(site / "search.2.json", files["search.2.json"])
    write_atomic(site / "extra.json", files["extra.json"])
    rows = [r for r in ROWS if r["url"] != "/search.json"]
    rows.append(route_row("/search.json", "search.2.json", "application/json"))
    rows.append(route_row(added, "extra.json", "application/json"))
    assert publish_table(site, rows) == {shard_path(bucket)}
    table_reads.clear()  # what publish_table read to compare

    assert client.get("/search.json").content == files["search.2.json"]  # the next request
    assert table_reads == [ROUTES_FILE, shard_path(bucket)]  # the entry and the one shard
    assert static.table.generation == generation + 1
    assert_serves(client, rows, files)
    assert table_reads == [ROUTES_FILE, shard_path(bucket)]  # nothing more: the table is unchanged
    assert static.table.generation == generation + 1
    for row in rows:
        now = static.table.lookup(row["url"], row.get("query") or {})
        if bucket_of(row["url"]) != bucket:
            assert now is before[key_of(row)], row  # the rows of an unchanged shard: the very same objects
        else:
            assert now == row


def test_a_shard_a_build_emptied_is_gone_with_its_routes(sharded: Sharded) -> None:
    client, static, site = sharded
    assert_serves(client, ROWS)
    generation = static.table.generation
    gone = bucket_of("/device/index.json")
    rows = [r for r in ROWS if bucket_of(r["url"]) != gone]
    assert publish_table(site, rows) == {shard_path(gone)}
    assert not (site / shard_path(gone)).exists()
    assert client.get("/device/index.json").status_code == 404
    assert static.table.generation == generation + 1
    assert_serves(client, rows)


def test_a_table_of_schema_1_still_works_and_is_followed_into_shards(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_site(site)
    publish_schema_1(site, ROWS)
    assert not list((site / SHARD_FOLDER).glob("*.json"))
    client, static = mount(site)
    assert_serves(client, ROWS)
    assert client.get("/").content == FILES["index.html"]
    assert client.get("/routes.json").status_code == 404
    generation = static.table.generation

    rows = [r for r in ROWS if r["url"] != "/index.html"]
    publish_schema_1(site, rows)  # an older builder's next build
    assert client.get("/index.html").status_code == 404
    assert static.table.generation == generation + 1

    publish_table(site, ROWS)  # the sharded builder's first build over it
    assert_serves(client, ROWS)
    assert static.table.generation == generation + 2


def test_no_table_no_routes(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_bytes(FILES["index.html"])
    client, static = mount(site)
    assert not site_exists(site)
    assert client.get("/index.html").status_code == 404
    assert static.table.generation == 0

    make_site(site)
    assert site_exists(site)
    assert_serves(client, ROWS)
    generation = static.table.generation
    (site / ROUTES_FILE).unlink()  # the table gone (the shards left behind serve nothing)
    assert client.get("/index.html").status_code == 404
    assert static.table.generation == generation + 1
    assert not site_exists(site)
