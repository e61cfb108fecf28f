"""Hostile clients (issue 12, item 3): web pages on other origins, DNS rebinding, local users.

Every test runs a real `depot agent` process in front of a small scripted store, and sends what
a browser or a local user would: a ``no-cors`` body (text/plain), a foreign ``Host``, an
``Origin`` or ``Sec-Fetch-Site`` of another site, and install_local_file paths outside the inbox.
Each is refused and queues nothing; installed files keep the archive's (narrower) modes.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from builder.device.module import pack_module
from tests.support.agent import (
    AgentProcess,
    ScriptedServer,
    agent_process,
    device_index,
    serve_device_index,
    wait_for,
)


def module_bytes(tmp: Path, name: str, version: str = "1.0") -> bytes:
    return pack_module(
        tmp / "built" / f"{name}.{version}.pi64.tar.gz", {"VERSION": version.encode()}
    ).read_bytes()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    data = module_bytes(tmp_path, "ax")
    serve_device_index(server, *device_index({"ax": data}))
    server.serve("/files/ax.1.0.pi64.tar.gz", data)
    try:
        yield server
    finally:
        server.close()


def queued(agent: AgentProcess) -> list[dict]:
    return [
        task
        for job in ("download", "install", "uninstall")
        for task in agent.get(f"/jobs/{job}/tasks").json()
    ]


DOWNLOAD = json.dumps({"packages": ["ax"]})


def test_a_no_cors_body_is_refused_and_queues_nothing(store: ScriptedServer, tmp_path: Path) -> None:
    """What `fetch(url, {method: "POST", mode: "no-cors", body})` can send: text/plain, a form,
    multipart, or no Content-Type at all. Only application/json bodies are read."""
    with agent_process(tmp_path, store.url, tmp_path / "root") as agent:
        for content_type in (
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            None,
            "application/jsonp",
        ):
            headers = {"Content-Type": content_type} if content_type else {}
            for path in ("/services/download_packages", "/services/install_local_file"):
                answer = agent.raw("POST", path, content=DOWNLOAD, headers=headers)
                assert answer.status_code == 415, (content_type, path, answer.text)
                assert "application/json" in answer.json()["error"]
        assert queued(agent) == []
        # the robot's UI, as the spec's curl examples send it, still works
        answer = agent.raw(
            "POST",
            "/services/download_packages",
            content=DOWNLOAD,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert answer.status_code == 201, answer.text
        # a POST without a body (refresh_store in the spec) needs no Content-Type
        assert agent.raw("POST", "/services/refresh_store").status_code == 200


def test_a_foreign_host_is_refused(store: ScriptedServer, tmp_path: Path) -> None:
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 reaches the
    agent with ``Host: evil.example``; it gets 421 for reads and writes alike."""
    with agent_process(tmp_path, store.url, tmp_path / "root", "--allowed-host", "Robot.LAN") as agent:
        port = agent.port
        for host in (
            "evil.example",
            f"evil.example:{port}",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "192.168.25.25",
            "",
            "[::1",
            "a:b:c",
        ):
            for method, path in (("GET", "/packages"), ("POST", "/services/download_packages")):
                answer = agent.raw(
                    method,
                    path,
                    content=DOWNLOAD,
                    headers={"Host": host, "Content-Type": "application/json"},
                )
                assert answer.status_code == 421, (host, method, answer.text)
                assert "--allowed-host" in answer.json()["error"]
        assert queued(agent) == []
        for host in (
            "localhost",
            f"localhost:{port}",
            f"127.0.0.1:{port}",
            f"[::1]:{port}",
            "robot.lan:8090",
        ):
            assert agent.get("/packages", headers={"Host": host}).status_code == 200, host


def test_the_host_is_checked_with_a_secret_too(store: ScriptedServer, tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, store.url, tmp_path / "root", env={"DEPOT_AGENT_SECRET": "s3cret"})
    agent.headers = {"Secret": "s3cret"}
    agent.start(wait_path="")
    try:
        wait_for(lambda: _answers(agent), what="agent")
        assert agent.get("/packages", headers={"Host": "evil.example"}).status_code == 421
        assert agent.get("/packages", headers={"Origin": "http://evil.example"}).status_code == 403
    finally:
        agent.stop()


def _answers(agent: AgentProcess) -> bool:
    try:
        return agent.get("/packages").status_code == 200
    except httpx.HTTPError:
        return False


def test_another_origin_is_refused(store: ScriptedServer, tmp_path: Path) -> None:
    """A page on another origin: its ``Origin`` header gives it away, on every method."""
    root = tmp_path / "root"
    with agent_process(tmp_path, store.url, root, "--allowed-host", "robot.lan") as agent:
        task = agent.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]["task_id"]
        agent.wait_task("download", task)
        own = f"http://127.0.0.1:{agent.port}"
        for origin in (
            "http://evil.example",
            f"http://evil.example:{agent.port}",
            "null",  # sandboxed frames, file:// pages
            "http://localhost:3000",  # another web app on this device
            f"https://127.0.0.1:{agent.port}.evil.example",
            "chrome-extension://abcdef",
        ):
            headers = {"Origin": origin, "Content-Type": "application/json"}
            for method, path in (
                ("POST", "/services/install_packages"),
                ("POST", "/services/uninstall_packages"),
                ("GET", "/packages"),
                ("GET", f"/jobs/download/tasks/{task}/log"),
            ):
                answer = agent.raw(method, path, content=DOWNLOAD, headers=headers)
                assert answer.status_code == 403, (origin, method, path, answer.text)
                assert "origin" in answer.json()["error"]
        assert [t["id"] for t in queued(agent)] == [task]
        # the agent's own origin, and a configured name (a same-origin proxy in front of it)
        for origin in (own, "http://robot.lan", "https://robot.lan:8443"):
            assert agent.get("/packages", headers={"Origin": origin}).status_code == 200, origin


def test_sec_fetch_site_of_another_site_is_refused(store: ScriptedServer, tmp_path: Path) -> None:
    """Browsers say where a request comes from even when they send no Origin (a GET of a log
    from an <img> or a no-cors fetch): cross-site and same-site (another port of this device)
    are refused, same-origin and none (typed in the address bar) are served."""
    with agent_process(tmp_path, store.url, tmp_path / "root") as agent:
        for site in ("cross-site", "same-site", "Cross-Site"):
            headers = {"Sec-Fetch-Site": site, "Content-Type": "application/json"}
            for method, path in (("GET", "/packages"), ("POST", "/services/download_packages")):
                answer = agent.raw(method, path, content=DOWNLOAD, headers=headers)
                assert answer.status_code == 403, (site, method, answer.text)
                assert "other web sites" in answer.json()["error"]
        assert queued(agent) == []
        for site in ("same-origin", "none"):
            assert agent.get("/packages", headers={"Sec-Fetch-Site": site}).status_code == 200


def test_install_local_file_takes_only_the_inbox_and_tells_nothing_of_other_paths(
    store: ScriptedServer, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    good = outside / "ax.1.0.pi64.tar.gz"
    good.write_bytes(module_bytes(tmp_path, "ax"))
    with agent_process(tmp_path, store.url, root, tmp_inbox=False) as agent:
        inbox = root / "inbox"
        assert stat.S_IMODE(inbox.stat().st_mode) == 0o700  # created private
        cases = [
            str(good),  # exists, a valid module
            str(outside / "ax.2.0.pi64.tar.gz"),  # does not exist
            str(outside),  # a folder
            "/etc/shadow",
            "/root/.ssh/id_ed25519",
            f"{inbox}/../outside/ax.1.0.pi64.tar.gz",  # exists, through ..
            f"{inbox}/../outside/nope.1.0.pi64.tar.gz",
            f"{inbox}x/ax.1.0.pi64.tar.gz",
            str(inbox),
            str(root / "downloads" / "ax.1.0.pi64.tar.gz"),
        ]
        messages = set()
        for filename in cases:
            answer = agent.post("/services/install_local_file", {"filename": filename})
            assert answer.status_code == 400, (filename, answer.text)
            error = answer.json()["error"]
            assert error.startswith(filename)
            messages.add(error.removeprefix(filename))
        assert messages == {f" is not in the inbox folder {inbox}; only files put there can be installed"}

        # links in the inbox are not followed, whether or not they lead anywhere
        (inbox / "ax.1.0.pi64.tar.gz").symlink_to(good)
        (inbox / "ax.3.0.pi64.tar.gz").symlink_to(outside / "missing")
        link_messages = set()
        for name in ("ax.1.0.pi64.tar.gz", "ax.3.0.pi64.tar.gz"):
            answer = agent.post("/services/install_local_file", {"filename": str(inbox / name)})
            assert answer.status_code == 400
            link_messages.add(answer.json()["error"].replace(name, "<name>"))
        assert len(link_messages) == 1 and "links in the inbox are not followed" in link_messages.pop()
        (inbox / "ax.1.0.pi64.tar.gz").unlink()
        # a link made in the inbox to a file elsewhere is refused too
        os.link(good, inbox / "ax.1.0.pi64.tar.gz")
        answer = agent.post("/services/install_local_file", {"filename": str(inbox / "ax.1.0.pi64.tar.gz")})
        assert answer.status_code == 400 and "hard links" in answer.json()["error"]
        (inbox / "ax.1.0.pi64.tar.gz").unlink()
        # a FIFO does not hang the request
        os.mkfifo(inbox / "ax.4.0.pi64.tar.gz")
        started = time.monotonic()
        answer = agent.post("/services/install_local_file", {"filename": str(inbox / "ax.4.0.pi64.tar.gz")})
        assert answer.status_code == 400 and "not a regular file" in answer.json()["error"]
        assert time.monotonic() - started < 5
        assert queued(agent) == []

        # the same file copied into the inbox installs
        (inbox / good.name).write_bytes(good.read_bytes())
        answer = agent.post("/services/install_local_file", {"filename": str(inbox / good.name)})
        assert answer.status_code == 200, answer.text
        assert agent.wait_task("install", answer.json()["task_id"])["status"] == "succeeded"


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file owned by another user takes root")
def test_a_file_of_another_user_is_refused(store: ScriptedServer, tmp_path: Path) -> None:
    """The agent runs as root here: a file in the inbox that `nobody` owns is not installed
    (nobody must not be able to hand the agent files), one root owns is."""
    root = tmp_path / "root"
    with agent_process(tmp_path, store.url, root, tmp_inbox=False) as agent:
        theirs = root / "inbox" / "ax.1.0.pi64.tar.gz"
        theirs.write_bytes(module_bytes(tmp_path, "ax"))
        os.chown(theirs, 65534, 65534)
        answer = agent.post("/services/install_local_file", {"filename": str(theirs)})
        assert answer.status_code == 400
        assert "belongs to uid 65534" in answer.json()["error"] and "uid 0" in answer.json()["error"]
        assert queued(agent) == []
        os.chown(theirs, 0, 0)
        answer = agent.post("/services/install_local_file", {"filename": str(theirs)})
        assert answer.status_code == 200, answer.text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_installed_files_keep_the_archive_modes(store: ScriptedServer, tmp_path: Path) -> None:
    """A root-only 0600 file in a module stays 0600 once installed (it used to become 0644);
    set-id, sticky and group/other write bits are dropped; nothing is ever added."""
    members = {
        "secret.key": 0o600,
        "group.conf": 0o640,
        "shared.txt": 0o666,  # → 0644
        "bin/tool": 0o777,  # → 0755
        "bin/suid": 0o4755,  # → 0755
        "bin/own-exec": 0o700,
        "readonly": 0o400,
        "private/inner": 0o644,
    }
    folders = {"private": 0o750, "sticky": 0o1777}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in folders.items():
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        for name, mode in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = 1, mode
            tar.addfile(info, io.BytesIO(b"x"))
    root = tmp_path / "root"
    with agent_process(tmp_path, store.url, root, tmp_inbox=False) as agent:
        local = root / "inbox" / "modes.1.0.pi64.tar.gz"
        local.write_bytes(buffer.getvalue())
        answer = agent.post("/services/install_local_file", {"filename": str(local)})
        assert answer.status_code == 200, answer.text
        copy = root / "downloads" / "local" / local.name
        try:
            copy_mode: int | None = stat.S_IMODE(copy.stat().st_mode)
        except FileNotFoundError:  # the install already finished and removed its private copy
            copy_mode = None
        assert copy_mode in (0o600, None)  # the agent's private copy
        assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
        assert agent.wait_task("install", answer.json()["task_id"])["status"] == "succeeded"
        current = root / "modules" / "modes" / "current"
        umask = _umask()
        expected = {name: mode & 0o755 & ~umask for name, mode in members.items()}
        assert expected["secret.key"] == 0o600 and expected["shared.txt"] == 0o644 & ~umask
        got = {name: stat.S_IMODE((current / name).stat().st_mode) for name in members}
        assert got == expected
        assert stat.S_IMODE((current / "private").stat().st_mode) == 0o750 & ~umask
        assert stat.S_IMODE((current / "sticky").stat().st_mode) == 0o755 & ~umask


def test_a_deep_or_large_json_body_is_a_400_not_a_crash(store: ScriptedServer, tmp_path: Path) -> None:
    with agent_process(tmp_path, store.url, tmp_path / "root") as agent:
        json_type = {"content-type": "application/json"}
        deep = agent.raw("POST", "/services/download_packages", content=b"[" * 30_000 + b"]" * 30_000,
                         headers=json_type)  # fmt: skip
        assert deep.status_code == 400 and "packages" in deep.json()["error"]
        large = agent.raw("POST", "/services/download_packages", content=b" " * (1 << 20), headers=json_type)
        assert large.status_code == 400
        assert agent.get("/jobs/download/tasks").json() == []
