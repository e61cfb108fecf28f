"""A whole catalog is published renderer by renderer (``Publisher.publish(final=False)``), so
that one renderer's outputs at a time are in memory: what an earlier part lets go stays on
disk and routed until the last part has published, a path one part lets go and a later part
claims is kept, and a build of the demo store is the same published in parts or at once."""

from __future__ import annotations

from pathlib import Path

import pytest

import builder.plan
from builder.build import build
from builder.publish import INDEX, LEAF, Output, Publisher
from builder.routes import load_routes
from builder.state import BuildState
from tests.support.repos import assert_same_tree, clean_build, copy_demo, site_tree


def _out(path: str, data: bytes, tier: int = LEAF) -> Output:
    return Output(
        path=path, fingerprint=data.decode(), media_type="text/plain", tier=tier, render=lambda: data
    )


def _publisher(tmp_path: Path) -> tuple[Publisher, BuildState]:
    site = tmp_path / "site"
    state = BuildState(tmp_path / "state", {"site": str(site)})
    return Publisher(site, state), state


def _urls(site: Path) -> set[str]:
    return {row["url"] for row in load_routes(site)}


def test_what_an_earlier_part_lets_go_stays_until_the_last_part(tmp_path: Path) -> None:
    publisher, _state = _publisher(tmp_path)
    site = publisher.site
    publisher.publish({"a|p:1": [_out("a/old.txt", b"old")], "b|p:1": [_out("b/index.txt", b"names a/old")]})
    assert _urls(site) == {"/a/old.txt", "/b/index.txt"}

    # part one: owner a now claims a/new.txt only; b, published later, still names a/old.txt
    publisher.publish({"a|p:1": [_out("a/new.txt", b"new")]}, final=False)
    assert (site / "a/old.txt").read_bytes() == b"old"
    assert {"/a/old.txt", "/a/new.txt"} <= _urls(site)  # new is routable before b names it
    publisher.publish({"b|p:1": [_out("b/index.txt", b"names a/new", tier=INDEX)]})
    assert not (site / "a/old.txt").exists()
    assert (site / "b/index.txt").read_bytes() == b"names a/new"
    assert _urls(site) == {"/a/new.txt", "/b/index.txt"}


def test_a_path_one_part_lets_go_and_a_later_part_claims_is_kept(tmp_path: Path) -> None:
    publisher, state = _publisher(tmp_path)
    site = publisher.site
    publisher.publish({"a|p:1": [_out("shared.txt", b"from a")], "b|p:1": []})
    publisher.publish({"a|p:1": []}, final=False)
    publisher.publish({"b|p:1": [_out("shared.txt", b"from b")]})
    assert (site / "shared.txt").read_bytes() == b"from b"
    row = state.output("shared.txt")
    assert row is not None and row.owner == "b|p:1"
    assert _urls(site) == {"/shared.txt"}


@pytest.mark.parametrize("fresh", [True, False])
def test_a_whole_catalog_is_planned_one_renderer_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: bool
) -> None:
    repo = copy_demo(tmp_path / "repo")
    site = tmp_path / "site"
    if not fresh:
        build(repo, site)
        settings = repo / "depot.toml"
        settings.write_text(settings.read_text().replace("Depot Demo Store", "Depot Demo Store, renamed"))
    calls: list[list[str] | None] = []
    plan = builder.plan.Planner.plan

    def spy(self: builder.plan.Planner, *args: object, **kwargs: object) -> object:
        only = kwargs.get("only")
        calls.append(None if only is None else [r.name for r in only])  # type: ignore[attr-defined]
        return plan(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builder.plan.Planner, "plan", spy)
    build(repo, site)
    assert calls == [["blobs"], ["device"], ["web"], ["shipper"], ["qt"], ["android"]]
    assert_same_tree(site_tree(site), clean_build(repo, tmp_path / "clean"))
    # a change of one package is planned at once, for every renderer
    calls.clear()
    (repo / "modules" / "ax.2.6.4.pi64.tar.gz").unlink()
    build(repo, site, changed=["modules/ax.2.6.4.pi64.tar.gz"])
    assert calls == [None]
    assert_same_tree(site_tree(site), clean_build(repo, tmp_path / "clean-after"))
