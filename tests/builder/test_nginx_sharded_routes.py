"""`depot nginx` over a sharded route table (builder.routes): a location for the rows of every
shard, the same block as for the schema-1 single file of the same rows, and, in a real nginx
(`depot nginx --node` in front of a fake runtime node), every row served from site/ while the
table's own files (routes.json, routes/*.json) are never served: they go to the runtime."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from builder.nginx import nginx_config
from builder.routes import ROUTES_FILE, SHARD_FOLDER, shard_path
from tests.support.nginx import NGINX
from tests.support.nodes import fake_nodes, nginx_in_front
from tests.support.sharded import FILES, ROWS, buckets_of, make_site, publish_schema_1

QUERY_URL = "/category/list"  # it has a query-string variant: the runtime answers it
STATIC = [r for r in ROWS if r["url"] != QUERY_URL and r.get("status", 200) == 200]
ERROR = next(r for r in ROWS if r.get("status"))


def test_the_block_has_the_locations_of_every_shard(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    assert len({shard_path(b) for b in buckets_of(STATIC)}) == len(STATIC) >= 5  # one shard each
    config = nginx_config(site, "127.0.0.1:8000")
    for row in STATIC:
        location = f'    location = "{row["url"]}" {{\n'
        assert config.count(location) == 1, row
        block = config[config.index(location) :].split("    }\n", 1)[0]
        assert f'default_type "{row["type"]}";' in block
        assert f"try_files /{row['file']} @depot;" in block
    assert '    location = "/modules/pi64/" {\n' in config  # the folder URL of an index.html
    assert '    location = "/" {\n' in config
    assert f"        error_page 404 /_depot_site/{ERROR['file']};\n        return 404;\n" in config
    query = config[config.index(f'    location = "{QUERY_URL}" {{\n') :].split("    }\n", 1)[0]
    assert "proxy_pass http://depot_runtime;" in query and "try_files" not in query
    assert config.count("    location = ") == len(STATIC) + 2 + 1 + 1  # folder URLs, error, query
    # The table's files are named by no directive: the comment line is all that mentions them.
    mentions = [line for line in config.splitlines() if ROUTES_FILE in line or f"{SHARD_FOLDER}/" in line]
    assert mentions == [line for line in mentions if line.startswith("# ")] and len(mentions) == 1


def test_a_table_of_schema_1_gives_the_same_block(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    sharded = nginx_config(site, ["10.0.0.1:8000", "10.0.0.2:8000"])
    publish_schema_1(site, ROWS)
    assert not list((site / SHARD_FOLDER).glob("*.json"))
    assert nginx_config(site, ["10.0.0.1:8000", "10.0.0.2:8000"]) == sharded


def test_depot_nginx_refuses_a_site_without_a_table(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from builder.cli import nginx_command

    (tmp_path / "site").mkdir()
    done = CliRunner().invoke(nginx_command, ["--site", str(tmp_path / "site")])
    assert done.exit_code != 0 and "run depot build first" in done.output


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/setup-system)")
def test_nginx_serves_every_shard_and_never_the_table(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    with fake_nodes(1) as (node,), nginx_in_front(tmp_path / "nginx", site, [node.address]) as front:
        for row in STATIC:
            answer = httpx.get(front.url + row["url"])
            assert answer.status_code == 200, row
            assert answer.content == FILES[row["file"]], row
            assert answer.headers["content-type"] == row["type"], row
        assert httpx.get(front.url + "/").content == FILES["index.html"]
        assert httpx.get(front.url + "/modules/pi64/").content == FILES["modules/pi64/index.html"]
        error = httpx.get(front.url + ERROR["url"])
        assert (error.status_code, error.content) == (404, FILES[ERROR["file"]])
        assert set(node.paths()) <= {"/healthz"}  # all of the above from site/, by nginx itself

        table = [
            "/" + ROUTES_FILE,
            *(f"/{SHARD_FOLDER}/{p.name}" for p in (site / SHARD_FOLDER).glob("*.json")),
        ]
        for path in [*table, f"/{SHARD_FOLDER}/"]:
            answer = httpx.get(front.url + path)
            assert answer.text == "fake1", path  # the runtime's answer (it has no such route)
            assert path in node.paths(), path
        for path in table:  # the X-Accel-Redirect location is internal: nginx's own 404
            hidden = httpx.get(front.url + "/_depot_site" + path)
            assert hidden.status_code == 404 and hidden.content != (site / path[1:]).read_bytes()
        assert httpx.get(front.url + QUERY_URL, params={"category_id": "2"}).text == "fake1"
