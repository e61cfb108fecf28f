"""Readers of a real `depot serve` while builds rename and delete files under them: every answer
is one complete file that some build published (issue: a response that stat'ed a name and opened
it again could send a body that did not match its Content-Length), and the device index shard an
entry names is there, whole, with the size and SHA-256 that entry states, however many builds
ran since the entry was read."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import httpx

from builder.build import build
from builder.device.render import bucket_of
from tests.support.device_index import shard_files
from tests.support.serving import serve_store

PATHS = ("/", "/search.json", "/device/index.json")
SHARD = "device shard of ax"  # fetched after each entry: the shard it names for ax on pi64
BUILDS = 120
SECONDS = 25  # an upper bound on the whole experiment, whatever the machine does


def test_every_static_answer_is_a_whole_published_file(tmp_path: Path) -> None:
    with serve_store(tmp_path) as store:
        published: dict[str, set[str]] = {p: set() for p in (*PATHS, SHARD)}
        routes = {"/": "index.html", "/search.json": "search.json", "/device/index.json": "device/index.json"}

        def remember() -> None:
            for url, file in routes.items():
                published[url].add(hashlib.sha256((store.site / file).read_bytes()).hexdigest())
            prefix = f"device/pi64/{bucket_of('ax')}."
            [ax] = [p for p in shard_files(store.site, "pi64") if p.startswith(prefix)]
            published[SHARD].add(hashlib.sha256((store.site / ax).read_bytes()).hexdigest())

        remember()
        sidecar = store.repo / "modules" / "ax.2.6.4.pi64.tar.gz.toml"
        done = threading.Event()
        seen: list[tuple[str, str]] = []
        failures: list[str] = []

        def reader() -> None:
            with httpx.Client(base_url=store.url, timeout=10) as client:
                while not done.is_set():
                    for path in PATHS:
                        try:
                            answer = client.get(path)
                        except httpx.HTTPError as exc:  # h11: too much / too little data
                            failures.append(f"{path}: {type(exc).__name__}: {exc}")
                            continue
                        if answer.status_code != 200:
                            failures.append(f"{path}: {answer.status_code}")
                            continue
                        if int(answer.headers["content-length"]) != len(answer.content):
                            failures.append(f"{path}: length {answer.headers['content-length']}")
                            continue
                        seen.append((path, hashlib.sha256(answer.content).hexdigest()))
                        if path == "/device/index.json":
                            shard(client, answer.json())

        def shard(client: httpx.Client, entry: dict) -> None:
            """What a device does next: fetch the shard the entry names, check it against it."""
            line = next(p for p in entry["platforms"] if p["name"] == "pi64")
            row = next(r for r in line["shards"] if r["shard"] == bucket_of("ax"))
            url = urljoin("/device/index.json", row["url"])
            try:
                answer = client.get(url)
            except httpx.HTTPError as exc:
                failures.append(f"{url}: {type(exc).__name__}: {exc}")
                return
            if answer.status_code != 200:
                failures.append(f"{url}: {answer.status_code} (the entry read just before names it)")
                return
            if int(answer.headers["content-length"]) != len(answer.content):
                failures.append(f"{url}: length {answer.headers['content-length']}")
            digest = hashlib.sha256(answer.content).hexdigest()
            if (len(answer.content), digest) != (row["size"], row["sha256"]):
                failures.append(f"{url}: not the size and SHA-256 its entry states")
            seen.append((SHARD, digest))

        readers = [threading.Thread(target=reader) for _ in range(3)]
        for t in readers:
            t.start()
        deadline = time.monotonic() + SECONDS
        builds = 0
        try:
            while builds < BUILDS and time.monotonic() < deadline:
                # a description shown by the home page, the search index and the device indexes
                sidecar.write_text(f'description = "Motion control, build {builds}"\n')
                build(store.repo, store.site)
                remember()
                builds += 1
        finally:
            done.set()
            for t in readers:
                t.join(timeout=30)
        assert failures == []
        assert builds >= 20 and len(seen) > 100
        assert len({h for p, h in seen if p == SHARD}) > 1  # readers saw shards of several builds
        unpublished = [(p, h) for p, h in seen if h not in published[p]]
        assert unpublished == []
