"""The download counters (runtime.downloads): path → item, batching, adding across processes,
the endpoints that count, and `depot stats import-log` over nginx's access log (a real nginx
with the `depot nginx` configuration when it is installed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from builder.build import build
from builder.nginx import LOG_FORMAT, LOG_FORMAT_LINE
from runtime import downloads
from runtime.cli import main as depot_main
from runtime.database import connect
from runtime.dialects import load_dialects
from runtime.downloadlog import LogImportError, import_log, parse_line
from runtime.downloads import DownloadCounter, counts_as_download, item_of_path, utc_day
from runtime.storage import configured_url, open_database
from tests.support.console import ConsoleStore, console_store
from tests.support.nginx import NGINX, generated_config, running_nginx
from tests.support.paths import PROJECT
from tests.support.serving import copy_demo_repo, free_port

BULLHEAD = "Bliss-v14-bullhead-OFFICIAL-gapps-20200608"
MODULE = "files/cc/0f2b187ef29ff0/ax.2.6.4.pi64.tar.gz"


def database(tmp_path: Path) -> str:
    """The URL of the run's database (SQLite in the data folder, or PostgreSQL), migrated."""
    load_dialects()
    open_database(tmp_path / "var").close()
    return configured_url(tmp_path / "var")


def stored(url: str) -> dict[tuple[str, str, str], int]:
    db = connect(url)
    try:
        return {
            (k, i, d): n for k, i, d, n in db.execute("SELECT kind, item, day, count FROM downloads_daily")
        }
    finally:
        db.close()


# -- which file is which item --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (MODULE, ("module", "ax 2.6.4")),
        ("/" + MODULE, ("module", "ax 2.6.4")),
        ("/files/1d/37fce78a284755/py_axbot.1.1.6-opi64.opi64.tar.gz", ("module", "py_axbot 1.1.6-opi64")),
        ("/files/d4/005816c721a1b8/bottom-sensor.1.4.3.pi64.bin?x=1", ("firmware", "bottom-sensor 1.4.3")),
        (
            "files/ff/893908d56c048a/android.appsecurity.cts.tinyapp-10.apk",
            ("apk", "android.appsecurity.cts.tinyapp 10"),
        ),
        ("files/ff/893908d56c048a/app-release.apk", ("apk", "app-release")),
        ("/files/cc/0f2b187ef29ff0/ax.2.6.4.pi64%2Etar.gz", ("module", "ax 2.6.4")),  # escapes as sent
        # not package files
        ("/", None),
        ("/device/index.json", None),
        ("files/cc/0f2b187ef29ff0/readme.txt", None),
        ("files/CC/0f2b187ef29ff0/ax.2.6.4.pi64.tar.gz", None),
        ("files/cc/0f2b18/ax.2.6.4.pi64.tar.gz", None),
        ("files/cc/0f2b187ef29ff0/../../../etc/passwd", None),
        ("files/cc/0f2b187ef29ff0/..%2F..%2Fax.2.6.4.pi64.tar.gz", None),
        ("files/cc/0f2b187ef29ff0/sub/ax.2.6.4.pi64.tar.gz", None),
        ("files/cc/0f2b187ef29ff0/%ff%fe.apk", None),
        ("files/cc/0f2b187ef29ff0/" + "a" * 5000 + ".apk", None),
        ("files/cc/0f2b187ef29ff0/ax.2.6.4.pi64.tar.gz\n", None),
    ],
)
def test_site_paths_map_to_items(path: str, expected: tuple[str, str] | None) -> None:
    assert item_of_path(path) == expected


def test_what_counts_as_one_download() -> None:
    assert counts_as_download("GET", None)
    assert counts_as_download("GET", "bytes=0-")
    assert counts_as_download("get", "bytes=0-99")
    assert not counts_as_download("HEAD", None)
    assert not counts_as_download("GET", "bytes=100-")
    assert not counts_as_download("POST", None)


# -- batching ------------------------------------------------------------------------------------


def no_background_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests call flush() themselves: the process's flusher thread, which wakes every
    FLUSH_SECONDS, must not flush in between (a loaded CI machine let it, once)."""
    monkeypatch.setattr(downloads._FLUSHER, "wake", lambda counter, now: None)


def test_many_records_are_one_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_background_flush(monkeypatch)
    path = database(tmp_path)
    counter = DownloadCounter(path)
    for _ in range(5000):
        counter.record_path(MODULE)
    counter.record("qt", "com.example.plain", 3)
    assert not counter.record_path(MODULE, method="HEAD")
    assert not counter.record_path(MODULE, range_header="bytes=10-")
    assert not counter.record_path("/index.html")
    assert counter.pending() == 5003 and stored(path) == {}  # nothing written per request
    assert counter.flush() == 5003
    assert counter.flushes == 1 and counter.pending() == 0
    today = utc_day()
    assert stored(path) == {("module", "ax 2.6.4", today): 5000, ("qt", "com.example.plain", today): 3}
    assert counter.flush() == 0 and counter.flushes == 1  # nothing pending: no transaction
    with pytest.raises(ValueError):
        counter.record("nonsense", "x")
    counter.close()


def test_a_flush_that_fails_keeps_its_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_background_flush(monkeypatch)
    (tmp_path / "var").mkdir()
    path = configured_url(tmp_path / "var")  # no schema yet: the flush fails
    counter = DownloadCounter(path)
    counter.record("apk", "a.b 1", 2)
    with pytest.raises(Exception, match="downloads_daily"):
        counter.flush()
    assert counter.pending() == 2
    load_dialects()
    open_database(tmp_path / "var").close()
    assert counter.flush() == 2
    assert stored(path) == {("apk", "a.b 1", utc_day()): 2}
    counter.close()


def test_the_background_flusher_writes_soon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = database(tmp_path)
    monkeypatch.setattr(downloads, "MAX_PENDING", 1)  # one distinct sum is enough to be due
    counter = downloads.counter_for(path)
    assert downloads.counter_for(path) is counter  # one per database and process
    counter.record("firmware", "bottom-sensor 1.4.3")
    deadline = time.monotonic() + 10
    while not stored(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stored(path) == {("firmware", "bottom-sensor 1.4.3", utc_day()): 1}
    counter.close()


ADDER = """
import sys, threading
from pathlib import Path
from runtime.downloads import DownloadCounter
path, rounds, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
counter = DownloadCounter(path)
for _ in range(rounds):
    for _ in range(per):
        counter.record("module", "ax 2.6.4")
        counter.record("apk", "a.b 7")
    counter.flush()
counter.close()
"""


def test_processes_and_connections_adding_at_once_lose_nothing(tmp_path: Path) -> None:
    path = database(tmp_path)
    rounds, per = 25, 40
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    children = [
        subprocess.Popen([sys.executable, "-c", ADDER, str(path), str(rounds), str(per)], env=env)
        for _ in range(3)
    ]

    def here() -> None:  # a second connection in this process, flushing as often
        counter = DownloadCounter(path)
        for _ in range(rounds):
            for _ in range(per):
                counter.record("module", "ax 2.6.4")
            counter.flush()
        counter.close()

    threads = [threading.Thread(target=here) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [c.wait(timeout=120) for c in children] == [0, 0, 0]
    today = utc_day()
    assert stored(path) == {
        ("module", "ax 2.6.4", today): 5 * rounds * per,
        ("apk", "a.b 7", today): 3 * rounds * per,
    }


# -- the endpoints that count --------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path):
    with console_store(tmp_path) as s:
        yield s


def test_ota_downloads_count_in_both_places(store: ConsoleStore) -> None:
    url = f"/download_check/bullhead/{BULLHEAD}/"
    assert store.client.get(url).status_code == 200
    assert store.client.get(url, headers={"Range": "bytes=100-"}).status_code == 206  # a resume
    assert store.client.head(url).status_code == 200
    magic = store.client.get(
        f"/api/v1/general/build/magic_download/bullhead/{BULLHEAD}/", follow_redirects=False
    )
    assert magic.status_code == 302
    counter = downloads.counter_for(configured_url(store.data))
    counter.flush()
    assert stored(configured_url(store.data)) == {("ota", f"bullhead/{BULLHEAD}", utc_day()): 2}
    assert store.client.get("/api/v1/download/count/all/").json() == {"count": 2}  # shipper's, as before


def test_qt_downloads_count(store: ConsoleStore) -> None:
    from runtime.accounts import Accounts
    from tests.support.qt import DEVICE

    db = open_database(store.data)
    Accounts(db).add("qtuser", "qt-password-1")
    db.close()
    client = store.client
    assert client.get("/hello", params={"platform": "NEPTUNE3", "version": "2"}).json() == {"status": "ok"}
    login = client.get("/login", params={"username": "qtuser", "password": "qt-password-1"})
    assert login.json() == {"status": "ok"}
    bought = client.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}).json()
    assert bought["status"] == "ok", bought
    path = bought["url"].split("://", 1)[1].split("/", 1)[1]
    assert client.get("/" + path).status_code == 200
    assert client.get("/" + path, headers={"Range": "bytes=10-"}).status_code == 206
    downloads.counter_for(configured_url(store.data)).flush()
    assert stored(configured_url(store.data)) == {("qt", "com.example.plain", utc_day()): 1}


# -- nginx's access log --------------------------------------------------------------------------

VARIABLE = re.compile(r"\$([a-z_0-9]+)")


def nginx_line(**values: str) -> str:
    """A line as nginx writes it for log_format depot_downloads: each variable's value, "-" when
    empty, with '"', '\\' and bytes outside printable ASCII escaped as \\xHH (escape=default)."""
    template = re.search(r"'(.*)'", LOG_FORMAT_LINE)
    assert template is not None

    def escape(text: str) -> str:
        out = []
        for byte in text.encode():
            out.append(chr(byte) if 0x20 <= byte < 0x7F and byte not in (0x22, 0x5C) else f"\\x{byte:02X}")
        return "".join(out)

    return VARIABLE.sub(lambda m: escape(values.get(m[1], "")) or "-", template[1])


def line_for(path: str = "/" + MODULE, status: str = "200", **more: str) -> str:
    values = {
        "remote_addr": "192.0.2.7",
        "time_local": "01/Dec/2026:23:30:00 -0200",  # 2 December in UTC
        "request": f"GET {path} HTTP/1.1",
        "status": status,
        "body_bytes_sent": "1234",
        "http_user_agent": 'curl/8 "quoted"',
    }
    values.update(more)
    return nginx_line(**values)


def test_the_log_format_round_trips() -> None:
    assert LOG_FORMAT == "depot_downloads" and LOG_FORMAT_LINE.startswith("log_format depot_downloads '")
    line = line_for()
    assert line.startswith('192.0.2.7 - - [01/Dec/2026:23:30:00 -0200] "GET /files/') and line.endswith(
        '"-" "-"'
    )
    assert parse_line(line) == ("module", "ax 2.6.4", "2026-12-02")
    assert parse_line(line_for(status="206", http_range="bytes=0-99")) == ("module", "ax 2.6.4", "2026-12-02")
    assert parse_line(line_for(remote_user="jane doe [x]")) == ("module", "ax 2.6.4", "2026-12-02")
    for skipped in (
        line_for(status="404"),
        line_for(status="304"),
        line_for(status="206", http_range="bytes=100-"),  # a resume
        line_for(request=f"HEAD /{MODULE} HTTP/1.1"),
        line_for(upstream_addr="127.0.0.1:8000"),  # the runtime answered and counted
        line_for(path="/device/index.json"),
        line_for(path="/files/cc/0f2b187ef29ff0/..%2F..%2F..%2Fetc%2Fpasswd"),
        line_for(time_local="99/Zzz/2026:99:99:99 +0000"),
        "garbage",
        "",
        "\x00\x01\x02" * 50,
    ):
        assert parse_line(skipped) is None, skipped


def test_import_log_adds_only_new_lines(tmp_path: Path) -> None:
    path = database(tmp_path)
    log = tmp_path / "access.log"
    day = "2026-12-02"
    log.write_text(line_for() + "\n" + line_for(status="404") + "\n" + line_for() + "\n")
    db = connect(path)
    first = import_log(db, log)
    assert (first.lines, first.counted, first.skipped) == (3, 2, 1)
    assert stored(path) == {("module", "ax 2.6.4", day): 2}
    again = import_log(db, log)
    assert (again.lines, again.counted, again.start) == (0, 0, first.end)
    # nginx appends; the last line is still being written
    firmware = "/files/d4/005816c721a1b8/bottom-sensor.1.4.3.pi64.bin"
    with log.open("a") as out:
        out.write(line_for(path=firmware) + "\n" + line_for()[:40])
    more = import_log(db, log)
    assert (more.lines, more.counted) == (1, 1)
    with log.open("a") as out:
        out.write(line_for()[40:] + "\n")
    assert import_log(db, log).counted == 1
    assert stored(path) == {("module", "ax 2.6.4", day): 3, ("firmware", "bottom-sensor 1.4.3", day): 1}
    # logrotate: the old file is renamed (same inode), a new one begins
    log.rename(tmp_path / "access.log.1")
    with (tmp_path / "access.log.1").open("a") as out:
        out.write(line_for() + "\n")  # written by nginx before it reopened its log
    log.write_text(line_for() + "\n")
    assert import_log(db, tmp_path / "access.log.1").counted == 1
    assert import_log(db, log).counted == 1
    assert import_log(db, tmp_path / "access.log.1").counted == 0
    # copytruncate: the same inode, shorter
    log.write_text(line_for(path=firmware) + "\n")
    assert import_log(db, log).counted == 1
    assert stored(path) == {("module", "ax 2.6.4", day): 5, ("firmware", "bottom-sensor 1.4.3", day): 2}
    db.close()


def test_import_log_survives_hostile_lines(tmp_path: Path) -> None:
    path = database(tmp_path)
    log = tmp_path / "access.log"
    with log.open("wb") as out:
        out.write(b"\xff\xfe\x00garbage\n")
        out.write(b"x" * 3_000_000 + b"\n")  # one huge line
        out.write(line_for().encode() + b"\n")
        out.write(line_for(path="/files/cc/0f2b187ef29ff0/../../../../etc/shadow").encode() + b"\n")
        out.write(line_for(path="/files/cc/0f2b187ef29ff0/" + "%2e%2e%2f" * 500 + "x.apk").encode() + b"\n")
        out.write(line_for(request="GET " + "/" + "a" * 9000 + " HTTP/1.1").encode() + b"\n")
        out.write(b'"' * 10_000 + b"\n")
        out.write(b"\r\n\n\n")
        out.write(line_for().encode() + b"\n")
        out.write(b"y" * 100_000)  # a huge unfinished line at the end: left for next time
    db = connect(path)
    result = import_log(db, log)
    assert result.counted == 2 and result.lines == 11
    assert stored(path) == {("module", "ax 2.6.4", "2026-12-02"): 2}
    with log.open("ab") as out:
        out.write(b"y\n" + line_for().encode() + b"\n")
    assert import_log(db, log).counted == 1
    db.close()
    db = connect(path)
    with pytest.raises(LogImportError, match=r"(?i)is a directory"):
        import_log(db, tmp_path)
    with pytest.raises(LogImportError, match="not a regular file"):
        import_log(db, Path(os.devnull))  # a device: never read (a FIFO would block)
    db.close()


def test_the_import_command(tmp_path: Path) -> None:
    database(tmp_path)
    log = tmp_path / "access.log"
    log.write_text(line_for() + "\n")
    args = ["stats", "import-log", str(log), "--data", str(tmp_path / "var"), "--format", "nginx"]
    first = CliRunner().invoke(depot_main, args)
    assert first.exit_code == 0, first.output
    assert "1 new lines" in first.output and "1 downloads added" in first.output
    second = CliRunner().invoke(depot_main, args)
    assert second.exit_code == 0 and "0 downloads added" in second.output
    missing = CliRunner().invoke(
        depot_main, ["stats", "import-log", str(tmp_path / "nope"), "--data", str(tmp_path / "var")]
    )
    assert missing.exit_code != 0 and "cannot read" in missing.output


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/setup-system)")
def test_a_real_nginx_log_imports(tmp_path: Path) -> None:
    assert NGINX is not None
    repo = copy_demo_repo(tmp_path / "repo")
    site = tmp_path / "site"
    build(repo, site)
    port = free_port()
    upstream = f"127.0.0.1:{free_port()}"  # nothing listens: package files never reach it
    generated = generated_config(site, upstream, port)
    assert f"access_log /var/log/nginx/depot-access.log {LOG_FORMAT};" in generated
    log = tmp_path / "depot-access.log"
    block = generated.replace("/var/log/nginx/depot-access.log", str(log))
    with (
        running_nginx(tmp_path, block, port, "/device/index.json") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        assert client.get("/" + MODULE).status_code == 200
        assert client.get("/" + MODULE, headers={"Range": "bytes=0-9"}).status_code == 206
        assert client.get("/" + MODULE, headers={"Range": "bytes=10-"}).status_code == 206  # resumed
        assert client.head("/" + MODULE).status_code == 200
        assert client.get("/files/cc/0f2b187ef29ff0/nope.pi64.tar.gz").status_code >= 400
        assert client.get("/files/cc/0f2b187ef29ff0/..%2F..%2F..%2Fetc%2Fpasswd").status_code >= 400
        assert client.get("/device/index.json").status_code == 200
    lines = log.read_text().splitlines()
    assert len(lines) >= 7, lines
    path = database(tmp_path)
    db = connect(path)
    result = import_log(db, log)
    db.close()
    assert result.counted == 2, lines  # the GET and the Range from byte 0
    today = datetime.now(UTC).date().isoformat()
    assert stored(path) == {("module", "ax 2.6.4", today): 2}


def test_the_static_mount_counts_package_files_from_memory_and_from_disk(tmp_path: Path) -> None:
    """Every package file the runtime serves is counted: small ones from the in-memory fast
    path, others through the file response; HEAD, a resumed Range and pages are not."""
    from runtime.downloads import counter_for, totals
    from runtime.storage import open_database
    from tests.support.console import console_store
    from tests.support.device_index import platform_packages, shard_files

    with console_store(tmp_path) as store:
        index = platform_packages(store.site, "pi64")
        version = index["modules"][0]["versions"][0]
        path = "/" + str(
            (store.site / "device/pi64" / version["url"]).resolve().relative_to(store.site.resolve())
        )
        item = ("module", f"{index['modules'][0]['name']} {version['version']}")
        for _ in range(3):
            assert store.client.get(path).status_code == 200  # the fast path, from memory
        assert (
            store.client.get(path, headers={"Range": "bytes=0-9"}).status_code == 206
        )  # from the first byte
        assert (
            store.client.get(path, headers={"Range": "bytes=10-"}).status_code == 206
        )  # a resume: not counted
        assert store.client.head(path).status_code == 200
        assert store.client.get("/device/index.json").status_code == 200  # indexes, not packages
        assert store.client.get("/" + shard_files(store.site, "pi64")[0]).status_code == 200
        counter_for(configured_url(store.data)).flush()
        db = open_database(store.data)
        try:
            assert totals(db).get(item) == 4
        finally:
            db.close()
