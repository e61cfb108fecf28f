"""Readers of a real `depot serve` while builds rename and delete files under them: every answer
is one complete file that some build published (issue: a response that stat'ed a name and opened
it again could send a body that did not match its Content-Length), and the device index shard an
entry names is served whole, with the size and SHA-256 that entry states, however many builds
ran since the entry was read (old shards are retained)."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx
import pytest

from builder.build import build
from tests.support.device_index import device_bucket, shard_files
from tests.support.serving import serve_store

PATHS = ("/", "/search.json", "/device/index.json")
SHARD = "device shard of ax"  # fetched after each entry: the shard it names for ax on pi64
BUILDS = 120
SECONDS = 25  # an upper bound on the whole experiment, whatever the machine does


@dataclass
class Experiment:
    builds: int = 0
    published: dict[str, set[str]] = field(default_factory=lambda: {p: set() for p in (*PATHS, SHARD)})
    seen: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # torn, wrong bytes, errors
    missing: list[str] = field(default_factory=list)  # a shard the entry just read names: 404


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Experiment:
    """Three readers (entry, then the ax shard it names; the home page; the search index)
    while builds change ax's description (shown by all of them) as fast as they can."""
    result = Experiment()
    with serve_store(tmp_path_factory.mktemp("during-builds")) as store:
        routes = {"/": "index.html", "/search.json": "search.json", "/device/index.json": "device/index.json"}

        def remember() -> None:
            for url, file in routes.items():
                result.published[url].add(hashlib.sha256((store.site / file).read_bytes()).hexdigest())
            prefix = f"device/pi64/{device_bucket('ax')}."
            [ax] = [p for p in shard_files(store.site, "pi64") if p.startswith(prefix)]
            result.published[SHARD].add(hashlib.sha256((store.site / ax).read_bytes()).hexdigest())

        def shard(client: httpx.Client, entry: dict) -> None:
            """What a device does next: fetch the shard the entry names, check it against it."""
            line = next(p for p in entry["platforms"] if p["name"] == "pi64")
            row = next(r for r in line["shards"] if r["shard"] == device_bucket("ax"))
            url = urljoin("/device/index.json", row["url"])
            try:
                answer = client.get(url)
            except httpx.HTTPError as exc:
                result.failures.append(f"{url}: {type(exc).__name__}: {exc}")
                return
            if answer.status_code == 404:
                result.missing.append(url)
                return
            if answer.status_code != 200:
                result.failures.append(f"{url}: {answer.status_code}")
                return
            if int(answer.headers["content-length"]) != len(answer.content):
                result.failures.append(f"{url}: length {answer.headers['content-length']}")
            digest = hashlib.sha256(answer.content).hexdigest()
            if (len(answer.content), digest) != (row["size"], row["sha256"]):
                result.failures.append(f"{url}: not the size and SHA-256 its entry states")
            result.seen.append((SHARD, digest))

        def reader() -> None:
            with httpx.Client(base_url=store.url, timeout=10) as client:
                while not done.is_set():
                    for path in PATHS:
                        try:
                            answer = client.get(path)
                        except httpx.HTTPError as exc:  # h11: too much / too little data
                            result.failures.append(f"{path}: {type(exc).__name__}: {exc}")
                            continue
                        if answer.status_code != 200:
                            result.failures.append(f"{path}: {answer.status_code}")
                            continue
                        if int(answer.headers["content-length"]) != len(answer.content):
                            result.failures.append(f"{path}: length {answer.headers['content-length']}")
                            continue
                        result.seen.append((path, hashlib.sha256(answer.content).hexdigest()))
                        if path == "/device/index.json":
                            shard(client, answer.json())

        remember()
        sidecar = store.repo / "modules" / "ax.2.6.4.pi64.tar.gz.toml"
        done = threading.Event()
        readers = [threading.Thread(target=reader) for _ in range(3)]
        for t in readers:
            t.start()
        deadline = time.monotonic() + SECONDS
        try:
            while result.builds < BUILDS and time.monotonic() < deadline:
                # a description shown by the home page, the search index and the device index
                sidecar.write_text(f'description = "Motion control, build {result.builds}"\n')
                build(store.repo, store.site)
                remember()
                result.builds += 1
        finally:
            done.set()
            for t in readers:
                t.join(timeout=30)
    return result


def test_every_static_answer_is_a_whole_published_file(experiment: Experiment) -> None:
    assert experiment.failures == []
    assert experiment.builds >= 20 and len(experiment.seen) > 100
    shards = {h for p, h in experiment.seen if p == SHARD}
    assert len(shards) > 1  # the readers saw the shards of several builds
    unpublished = [(p, h) for p, h in experiment.seen if h not in experiment.published[p]]
    assert unpublished == []


def test_the_shard_an_entry_names_is_served_as_soon_as_the_entry_is(experiment: Experiment) -> None:
    shard_fetches = len(experiment.missing) + sum(1 for p, _ in experiment.seen if p == SHARD)
    assert experiment.missing == [], f"{len(experiment.missing)} of {shard_fetches} shard fetches: 404"
