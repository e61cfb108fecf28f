"""The Qt, shipper and Android renderers planned by parts (builder/render.py, builder/plan.py).

What the incremental engine relies on: a part's outputs and fragments depend only on its records
and the settings, a target's only on its fragments and the settings, so re-rendering only the
parts whose records changed (and re-assembling only the targets whose fragments changed) gives
what planning from scratch gives; record order does not matter; no path has two owners; a file
whose bytes change gets a new fingerprint. And the assembled files are the ones the reference
semantics give, computed here directly from the records with ``json_bytes``.

Stores: a copy of the demo repo and a seeded synthetic one (benchmarks/synth.py), both with a few
extra records and settings for the cases they lack (several architectures of one app, a key in
two package files, a purchaseId in two variants, an x86 device, a codename that is no slug).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from benchmarks.synth import generate
from builder.model import AndroidVersion, AppVariant, OtaBuild, OtaDevice, OtaVariant, Record
from builder.plan import (
    RendererPlan,
    group_records,
    part_owner,
    plan_all,
    plan_renderer,
    target_owner,
)
from builder.portal.render import INDEX_PATH, AndroidCatalog, country_path, package_path
from builder.publish import Output
from builder.qt.package import escape_key
from builder.qt.render import ALL, QtStore, key_of, list_entry, list_path, unique_variants, variants_entry
from builder.render import Fragment, RenderContext, Renderer, json_bytes
from builder.scan import Scanner
from builder.settings import load_settings
from builder.shipper.render import DEVICES_URL, SLUG, ShipperFeeds
from tests.support.repos import copy_demo

RENDERERS: list[Callable[[], Renderer]] = [ShipperFeeds, QtStore, AndroidCatalog]
OTHER_ARCH = "arm64-little_endian-64-elf"

Store = tuple[RenderContext, list[Record]]


def _by_path(records: list[Record]) -> list[Record]:
    return sorted(records, key=lambda r: r.blob.path)  # type: ignore[attr-defined]


def _augment(repo: Path, ctx: RenderContext, records: list[Record]) -> Store:
    """The store's records and settings plus the cases a plain store lacks."""
    extra: list[Record] = []
    apps = [r for r in records if isinstance(r, AppVariant)]
    for n, app in enumerate(apps[:3]):
        # the same app for a native architecture, another "All" variant (the static choice is
        # the last by tags) and the same key in a later package file (the first file wins)
        extra.append(dataclasses.replace(app, architecture=OTHER_ARCH, purchase_uuid=f"native-{n}"))
        extra.append(dataclasses.replace(app, tags_hash=app.tags_hash + "~", purchase_uuid=f"tagged-{n}"))
        copy = "zz-copies/" + app.blob.path
        (repo / copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(repo / app.blob.path, repo / copy)
        extra.append(dataclasses.replace(app, blob=dataclasses.replace(app.blob, path=copy), name="dup"))
    if apps:  # two variants of one purchaseId: the last in list order is the runtime's
        extra.append(dataclasses.replace(apps[-1], architecture="i386-little_endian-32-elf"))
    settings = ctx.settings
    builds = [r for r in records if isinstance(r, OtaBuild)]
    devices = (
        *settings.ota_devices,
        OtaDevice("x86", "An x86 tablet", maintained=False, note="x86"),
        OtaDevice("not.a.slug", "Dotted", visible=False),
        OtaDevice("nothing", "No builds"),
    )
    x86_types = (*settings.ota_x86_types, OtaVariant("go", "Go"), OtaVariant("stable", "Stable"))
    for n, build in enumerate(builds[:6]):
        codename = "x86" if n % 2 else "not.a.slug"
        blob = dataclasses.replace(build.blob, path=f"builds/{codename}/{n}-{build.blob.filename}")
        extra.append(
            dataclasses.replace(
                build, codename=codename, blob=blob, x86_type="go" if n % 3 else "", enabled=n != 5
            )
        )
    settings = dataclasses.replace(settings, ota_devices=devices, ota_x86_types=x86_types)
    return dataclasses.replace(ctx, settings=settings), _by_path(records + extra)


def _scan(repo: Path) -> Store:
    settings = load_settings(repo)
    records = _by_path(Scanner(repo).scan(settings).records)
    ctx = RenderContext(settings=settings, repo=repo, templates=None, template_digest="")
    return _augment(repo, ctx, records)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Store]:
    root = tmp_path_factory.mktemp("dialect-parts")
    demo = copy_demo(root / "demo")
    synth = root / "synth"
    generate(synth, 400, seed=11, kinds=("qt", "ota", "apk"))
    return {"demo": _scan(demo), "synth": _scan(synth)}


@pytest.fixture(params=["demo", "synth"])
def store(request: pytest.FixtureRequest, stores: dict[str, Store]) -> Store:
    return stores[request.param]


def _bytes(out: Output) -> bytes:
    if out.source is not None:
        return out.source.read_bytes()
    assert out.render is not None
    return out.render()


def _described(out: Output) -> tuple[Any, ...]:
    query = tuple(sorted(out.query.items())) if out.query is not None else None
    return (out.fingerprint, out.media_type, out.tier, out.url, query, out.status, out.retain, _bytes(out))


def _files(outputs: Sequence[Output]) -> dict[str, tuple[Any, ...]]:
    files: dict[str, tuple[Any, ...]] = {}
    for out in outputs:
        assert out.path not in files, f"two outputs claim {out.path}"
        files[out.path] = _described(out)
    return files


def _plan(store: Store, records: Sequence[Record] | None = None) -> dict[str, tuple[Any, ...]]:
    ctx, all_records = store
    return _files(plan_all([make() for make in RENDERERS], all_records if records is None else records, ctx))


def _digests(records: list[Record]) -> list[str]:
    return [r.digest for r in records]


def _fragments_by_target(fragments: dict[str, list[Fragment]]) -> dict[str, list[tuple[str, str, Fragment]]]:
    by_target: dict[str, list[tuple[str, str, Fragment]]] = {}
    for origin, frags in fragments.items():
        for f in frags:
            by_target.setdefault(f.target, []).append((f.order, origin, f))
    return {t: sorted(rows, key=lambda r: (r[0], r[1])) for t, rows in by_target.items()}


def _incremental(
    renderer: Renderer, before: list[Record], after: list[Record], ctx: RenderContext
) -> tuple[RendererPlan, int, int]:
    """What the incremental engine does: the plan of ``before``, then only the parts whose
    records changed rendered again and only the targets whose fragments changed assembled
    again. Also how many parts and targets were kept."""
    old = plan_renderer(renderer, before, ctx)
    old_groups = group_records(renderer, before, ctx.settings)
    old_rows = _fragments_by_target(old.fragments)
    plan = RendererPlan()
    kept_parts = kept_targets = 0
    for part, members in sorted(group_records(renderer, after, ctx.settings).items()):
        owner = part_owner(part)
        if part in old_groups and _digests(old_groups[part]) == _digests(members):
            plan.outputs[owner], plan.fragments[owner] = old.outputs[owner], old.fragments[owner]
            kept_parts += 1
        else:
            result = renderer.render_part(part, members, ctx)
            plan.outputs[owner], plan.fragments[owner] = result.outputs, result.fragments
    pending = set(renderer.fixed_targets(ctx.settings)) | set(_fragments_by_target(plan.fragments))
    done: set[str] = set()
    while pending:
        level = min(renderer.level(t) for t in pending)
        rows = _fragments_by_target(plan.fragments)
        for target in sorted(t for t in pending if renderer.level(t) == level):
            pending.discard(target)
            done.add(target)
            owner = target_owner(target)
            mine = rows.get(target, [])
            if owner in old.outputs and mine == old_rows.get(target, []):
                plan.outputs[owner], plan.fragments[owner] = old.outputs[owner], old.fragments[owner]
                kept_targets += 1
            else:
                result = renderer.assemble(target, [f for _order, _origin, f in mine], ctx)
                plan.outputs[owner], plan.fragments[owner] = result.outputs, result.fragments
            pending |= {f.target for f in plan.fragments[owner]} - done
    return plan, kept_parts, kept_targets


def _changes(records: list[Record]) -> list[tuple[str, list[Record]]]:
    """Stores one change away from ``records``: each kind's package gone, a build disabled,
    an app moved to another category, an APK live in one more country."""
    changes: list[tuple[str, list[Record]]] = []
    for kind in (AppVariant, OtaBuild, AndroidVersion):
        of_kind = [r for r in records if isinstance(r, kind)]
        for victim in (of_kind[0], of_kind[len(of_kind) // 2]) if of_kind else ():
            changes.append((f"without {victim.blob.path}", [r for r in records if r is not victim]))

    def replaced(old: Record, new: Record) -> list[Record]:
        return [new if r is old else r for r in records]

    build = next(r for r in records if isinstance(r, OtaBuild) and r.enabled)
    changes.append(("a build disabled", replaced(build, dataclasses.replace(build, enabled=False))))
    app = next(r for r in records if isinstance(r, AppVariant))
    changes.append(("an app in another category", replaced(app, dataclasses.replace(app, category="Tools!"))))
    apk = next((r for r in records if isinstance(r, AndroidVersion)), None)
    if apk is not None:
        changes.append(
            ("an APK in one more country", replaced(apk, dataclasses.replace(apk, countries=("ZZ",))))
        )
    return changes


# -- the invariants of planning by parts ---------------------------------------------------------


def test_the_order_of_the_records_does_not_matter(store: Store) -> None:
    _ctx, records = store
    expected = _plan(store)
    for seed in range(3):
        shuffled = list(records)
        random.Random(seed).shuffle(shuffled)
        assert _plan(store, shuffled) == expected


def test_re_planning_what_a_change_touches_equals_planning_from_scratch(store: Store) -> None:
    ctx, records = store
    before = _plan(store)
    kept: dict[str, list[int]] = {}
    for what, after_records in _changes(records):
        scratch = _plan(store, after_records)
        outputs: list[Output] = []
        for make in RENDERERS:
            renderer = make()
            plan, kept_parts, kept_targets = _incremental(renderer, records, after_records, ctx)
            counts = kept.setdefault(renderer.name, [0, 0])
            counts[0] += kept_parts
            counts[1] += kept_targets
            for owner in sorted(plan.outputs):
                outputs.extend(plan.outputs[owner])
        assert _files(outputs) == scratch, what
        # The publisher skips a file whose fingerprint it has seen: new bytes, new fingerprint.
        for path, now in scratch.items():
            if path in before and before[path][0] == now[0]:
                assert before[path] == now, (what, path)
    # the comparison did keep parts and targets (the device list, the untouched countries)
    assert all(parts for parts, _targets in kept.values()), kept
    assert kept["shipper"][1] and kept["android"][1], kept


def test_a_part_is_what_its_records_make_alone(store: Store) -> None:
    """Each part rendered by a fresh renderer with only its own records (also in reverse order)
    is its slice of the whole plan; each target assembled alone from its fragments too."""
    ctx, records = store
    for make in RENDERERS:
        whole = plan_renderer(make(), records, ctx)
        for part, members in group_records(make(), records, ctx.settings).items():
            owner = part_owner(part)
            for given in (members, members[::-1]):
                alone = make().render_part(part, list(given), ctx)
                assert _files(alone.outputs) == _files(whole.outputs[owner]), part
                assert alone.fragments == whole.fragments[owner], part
        for target, rows in _fragments_by_target(whole.fragments).items():
            alone = make().assemble(target, [f for _order, _origin, f in rows], ctx)
            assert _files(alone.outputs) == _files(whole.outputs[target_owner(target)]), target
            assert alone.fragments == whole.fragments[target_owner(target)], target


def test_no_path_has_two_owners_and_every_target_is_assembled(store: Store) -> None:
    ctx, records = store
    for make in RENDERERS:
        renderer = make()
        plan = plan_renderer(renderer, records, ctx)
        owners: dict[str, str] = {}
        for owner, outputs in plan.outputs.items():
            for out in outputs:
                assert owners.setdefault(out.path, owner) == owner, out.path
        for target in renderer.fixed_targets(ctx.settings):
            assert plan.outputs[target_owner(target)], target


# -- the assembled files, computed directly from the records -------------------------------------


def test_the_qt_lists_and_variants_are_the_reference_semantics(store: Store) -> None:
    """Per architecture the "All" variants and that architecture's, sorted by (id,
    architecture, tags_hash), one variant per key (the first package file wins); per
    category the same filtered; qt/variants.json by purchaseId."""
    ctx, records = store
    settings = ctx.settings
    planned = _plan(store)
    seen: dict[str, AppVariant] = {}
    for app in sorted((r for r in records if isinstance(r, AppVariant)), key=lambda a: a.blob.path):
        seen.setdefault(key_of(app), app)
    apps = sorted(seen.values(), key=lambda a: (a.id, a.architecture, a.tags_hash))
    assert apps == unique_variants(records)
    assert any(a.name == "dup" for a in records if isinstance(a, AppVariant))
    assert not any(a.name == "dup" for a in apps)
    archs = sorted({a.architecture for a in apps} - {ALL})
    assert OTHER_ARCH in archs
    ids = {c.name: c.id for c in settings.categories}
    expected: dict[str, bytes] = {}
    for arch in [ALL, *archs]:
        visible = [a for a in apps if a.architecture in (ALL, arch)]
        expected[list_path(arch, "all")] = json_bytes([list_entry(a, ids) for a in visible])
        for c in settings.categories:
            members = [list_entry(a, ids) for a in visible if a.category == c.name]
            expected[list_path(arch, str(c.id))] = json_bytes(members)
    expected[list_path(ALL, "all-by-id")] = expected[list_path(ALL, "all")]
    variants = {a.purchase_uuid: variants_entry(a) for a in apps}
    expected["qt/variants.json"] = json_bytes({"schema": 1, "architectures": archs, "variants": variants})
    lists = {p: v[-1] for p, v in planned.items() if p.startswith("qt/app-list/") or p == "qt/variants.json"}
    assert lists == expected
    assert json.loads(lists["qt/variants.json"])["variants"][apps[-1].purchase_uuid]["architecture"] == (
        "i386-little_endian-32-elf"
    )
    # the lists of the "All" folder answer /app/list, the others are the runtime's
    assert planned[list_path(ALL, "all")][3] == "/app/list"
    assert planned[list_path(archs[0], "all")][3] is None
    # each id's static choice: the last "All" variant by tags
    for app_id in {a.id for a in apps}:
        chosen = [a for a in apps if a.id == app_id and a.architecture == ALL]
        if chosen:
            by_id = planned[f"qt/description-by-id/{escape_key(app_id)}.html"]
            of_key = planned[f"qt/descriptions/{escape_key(key_of(chosen[-1]))}.html"]
            assert (by_id[0], by_id[-1]) == (of_key[0], of_key[-1])
            assert by_id[3:5] == ("/app/description", (("id", app_id),))
        else:
            assert f"qt/description-by-id/{escape_key(app_id)}.html" not in planned


def test_the_device_list_names_every_declared_device(store: Store) -> None:
    """Also invisible devices, devices without builds and codenames that are no slug (which
    have no feeds); variants are the declared ones with an enabled build, in depot.toml order."""
    ctx, records = store
    settings = ctx.settings
    planned = _plan(store)
    variants = [v.codename for v in settings.ota_variants if SLUG.match(v.codename)]
    enabled = {(b.codename, b.variant) for b in records if isinstance(b, OtaBuild) and b.enabled}
    expected = {
        d.codename: {
            "status": d.maintained,
            "variants": [v for v in variants if (d.codename, v) in enabled],
            "note": d.note,
        }
        for d in settings.ota_devices
    }
    path = DEVICES_URL.strip("/") + "/index.json"
    assert planned[path][-1] == json_bytes(expected)
    assert expected["not.a.slug"]["variants"] and expected["x86"]["variants"]
    assert not any("not.a.slug" in p for p in planned)
    x86 = [p for p in planned if p.startswith("api/v1/updater/los/x86/")]
    assert any(planned[p][5] == 400 for p in x86) and any(planned[p][5] is None for p in x86)


def test_the_android_index_states_each_page_it_names(store: Store) -> None:
    _ctx, records = store
    planned = _plan(store)
    index = json.loads(planned[INDEX_PATH][-1])
    packages = sorted({r.package for r in records if isinstance(r, AndroidVersion)})
    countries = sorted({c for r in records if isinstance(r, AndroidVersion) for c in r.countries})
    assert [p["package"] for p in index["packages"]] == packages
    assert [c["country"] for c in index["countries"]] == countries
    rows = [(package_path(p["package"]), p) for p in index["packages"]]
    rows += [(country_path(c["country"]), c) for c in index["countries"]]
    for path, row in rows:
        body = planned[path][-1]
        assert (row["size"], row["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
        assert row["url"] == path.removeprefix("android/")
    pages = {p for p in planned if p.startswith("android/")}
    assert pages == {INDEX_PATH, *(path for path, _row in rows)}
