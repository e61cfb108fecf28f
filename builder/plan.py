"""Planning: from catalog records to the outputs of every renderer, by parts and targets.

``plan_all`` plans a whole catalog in memory: what a clean build publishes, and the oracle the
incremental planner (:class:`Planner`, over the build state) must agree with byte for byte.
See builder/render.py for the renderer protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from builder.model import Record, StoreSettings
from builder.progress import Progress
from builder.publish import Output
from builder.render import Fragment, Part, RenderContext, Renderer
from builder.scan import entry_records
from builder.state import BuildState


def part_owner(part: str) -> str:
    return "p:" + part


def target_owner(target: str) -> str:
    return "t:" + target


@dataclass
class RendererPlan:
    """One renderer's whole plan: outputs by owner, fragments by origin."""

    outputs: dict[str, list[Output]] = field(default_factory=dict)  # owner → outputs
    fragments: dict[str, list[Fragment]] = field(default_factory=dict)  # origin (an owner) → fragments


def group_records(
    renderer: Renderer, records: Iterable[Record], settings: StoreSettings
) -> dict[str, list[Record]]:
    """part → its records, in the order given (the planner gives them by package file)."""
    parts: dict[str, list[Record]] = {p: [] for p in renderer.fixed_parts(settings)}
    for record in records:
        for part in renderer.parts(record, settings):
            parts.setdefault(part, []).append(record)
    return parts


def assemble_levels(
    renderer: Renderer,
    ctx: RenderContext,
    fragments: dict[str, list[Fragment]],
    targets: set[str],
    plan: RendererPlan,
) -> None:
    """Assemble ``targets`` (and every target their assemblies feed) level by level, given every
    fragment already emitted (origin → fragments)."""
    by_target: dict[str, list[tuple[str, str, Fragment]]] = {}
    for origin, frags in fragments.items():
        for f in frags:
            by_target.setdefault(f.target, []).append((f.order, origin, f))
    pending = set(targets) | set(by_target)
    done: set[str] = set()
    while pending:
        level = min(renderer.level(t) for t in pending)
        for target in sorted(t for t in pending if renderer.level(t) == level):
            pending.discard(target)
            done.add(target)
            rows = sorted(by_target.get(target, []), key=lambda r: (r[0], r[1]))
            part = renderer.assemble(target, [f for _order, _origin, f in rows], ctx)
            owner = target_owner(target)
            plan.outputs[owner] = part.outputs
            plan.fragments[owner] = part.fragments
            for f in part.fragments:
                if renderer.level(f.target) <= level:
                    raise ValueError(
                        f"{renderer.name}: {target} feeds {f.target}, which is not a higher level"
                    )
                by_target.setdefault(f.target, []).append((f.order, owner, f))
                if f.target not in done:
                    pending.add(f.target)


def plan_renderer(renderer: Renderer, records: Sequence[Record], ctx: RenderContext) -> RendererPlan:
    plan = RendererPlan()
    for part, members in sorted(group_records(renderer, records, ctx.settings).items()):
        result: Part = renderer.render_part(part, members, ctx)
        plan.outputs[part_owner(part)] = result.outputs
        plan.fragments[part_owner(part)] = result.fragments
    fixed = set(renderer.fixed_targets(ctx.settings))
    assemble_levels(renderer, ctx, dict(plan.fragments), fixed, plan)
    return plan


def plan_all(renderers: Sequence[Renderer], records: Sequence[Record], ctx: RenderContext) -> list[Output]:
    """Every output of every renderer for ``records`` (sorted by package file)."""
    outputs: list[Output] = []
    for renderer in renderers:
        plan = plan_renderer(renderer, records, ctx)
        for owner in sorted(plan.outputs):
            outputs.extend(plan.outputs[owner])
    return outputs


def owner_key(renderer: str, owner: str) -> str:
    """How the manifest names the owner of an output: ``<renderer>|p:<part>`` or ``…|t:<target>``."""
    return f"{renderer}|{owner}"


class Planner:
    """The incremental planner: re-renders the parts a change touches and re-assembles the
    targets whose fragments changed, over the build state (builder/state.py). ``plan`` returns
    the new outputs of every owner it re-planned (an owner that is gone: no outputs); the
    publisher compares them with the manifest. Everything it learns (members, fragments,
    owners) is written to the state inside the build's transaction."""

    def __init__(
        self,
        state: BuildState,
        renderers: Sequence[Renderer],
        ctx: RenderContext,
        progress: Progress | None = None,
    ) -> None:
        self.state, self.renderers, self.ctx = state, renderers, ctx
        self.progress = progress  # shown when a whole catalog is planned
        self._records: dict[str, list[Record]] = {}  # package file → its records now
        self._everything: list[tuple[str, list[Record]]] | None = None  # every record, when read
        self.parts_rendered = 0
        self.targets_assembled = 0

    def plan(
        self,
        changed: dict[str, tuple[list[Record], list[Record]]],
        *,
        everything: bool = False,
        force: Iterable[str] = (),
        only: Iterable[Renderer] | None = None,
    ) -> dict[str, list[Output]]:
        """``changed``: package file → (records before, records now). ``everything``: plan the
        whole catalog again (settings, templates or builder code changed). ``force``: owner
        keys to render again whatever changed (their files in site/ were damaged). ``only``:
        these renderers, not all (a whole catalog is planned and published one renderer at a
        time; every record is read once, for all of them)."""
        if not everything:  # planning everything reads every record from the state
            for path, (_before, now) in changed.items():
                self._records[path] = now
                self._everything = None  # what a held file is published as, from now on
        desired: dict[str, list[Output]] = {}
        everything_records = None
        if everything:
            if self._everything is None:
                self._everything = self._every_record()
            everything_records = self._everything
        for renderer in self.renderers if only is None else only:
            forced = {k.split("|", 1)[1] for k in force if k.split("|", 1)[0] == renderer.name}
            if everything_records is not None:
                self._plan_everything(renderer, everything_records, desired)
            else:
                self._plan_changes(renderer, changed, forced, desired)
        return desired

    # -- records --------------------------------------------------------------------------

    def _every_record(self) -> list[tuple[str, list[Record]]]:
        found: list[tuple[str, list[Record]]] = []
        for path, entry in self.state.all_entries():
            records = self._records.get(path)
            if records is None:
                records = entry_records(entry)
            if records:
                found.append((path, records))
        return found

    def records_now(self, path: str) -> list[Record]:
        """The records this build plans from ``path``."""
        return self._records_of([path])[path]

    def _records_of(self, paths: Iterable[str]) -> dict[str, list[Record]]:
        missing = [p for p in paths if p not in self._records]
        for path, entry in self.state.entries_of(missing).items():
            self._records[path] = entry_records(entry)
        return {p: self._records.get(p, []) for p in paths}

    # -- one renderer ---------------------------------------------------------------------

    def _plan_everything(
        self, renderer: Renderer, every: list[tuple[str, list[Record]]], desired: dict[str, list[Output]]
    ) -> None:
        state, name, settings = self.state, renderer.name, self.ctx.settings
        groups: dict[str, list[Record]] = {p: [] for p in renderer.fixed_parts(settings)}
        rows: list[tuple[str, str]] = []
        for path, records in every:
            for record in records:
                for part in renderer.parts(record, settings):
                    members = groups.setdefault(part, [])
                    members.append(record)
                    rows.append((part, path))
        state.replace_members(name, rows)
        stale = state.owners(name)
        dirty: set[str] = set(renderer.fixed_targets(settings)) | state.targets(name)
        if self.progress:
            self.progress.start(len(groups), f"planning {name}")
        for part in sorted(groups):
            owner = part_owner(part)
            stale.discard(owner)
            dirty |= self._render(
                renderer, owner, renderer.render_part(part, groups[part], self.ctx), desired
            )
            if self.progress:
                self.progress.advance(1)
        if self.progress:
            self.progress.finish()
        for owner in stale:
            if owner.startswith("p:"):
                dirty |= self._drop(renderer, owner, desired)
            else:  # a target nothing feeds any more: assembling it finds no fragments, drops it
                dirty.add(owner.removeprefix("t:"))
        self._assemble(renderer, dirty, desired)

    def _plan_changes(
        self,
        renderer: Renderer,
        changed: dict[str, tuple[list[Record], list[Record]]],
        forced: set[str],
        desired: dict[str, list[Output]],
    ) -> None:
        state, name, settings = self.state, renderer.name, self.ctx.settings
        affected = {o.removeprefix("p:") for o in forced if o.startswith("p:")}
        for path, (before, now) in changed.items():
            old = {p for r in before for p in renderer.parts(r, settings)}
            new = {p for r in now for p in renderer.parts(r, settings)}
            if old != new:
                state.set_members(name, path, new - old, old - new)
            affected |= old | new
        fixed = set(renderer.fixed_parts(settings))
        dirty = {o.removeprefix("t:") for o in forced if o.startswith("t:")}
        for part in sorted(affected):
            paths = state.member_paths(name, part)
            records = [
                r
                for rs in self._records_of(paths).values()
                for r in rs
                if part in renderer.parts(r, settings)
            ]
            owner = part_owner(part)
            if not records and part not in fixed:
                dirty |= self._drop(renderer, owner, desired)
                continue
            dirty |= self._render(renderer, owner, renderer.render_part(part, records, self.ctx), desired)
        self._assemble(renderer, dirty, desired)

    def _assemble(self, renderer: Renderer, dirty: set[str], desired: dict[str, list[Output]]) -> None:
        state, name = self.state, renderer.name
        fixed = set(renderer.fixed_targets(self.ctx.settings))
        done: set[str] = set()
        pending = set(dirty)
        while pending:
            level = min(renderer.level(t) for t in pending)
            for target in sorted(t for t in pending if renderer.level(t) == level):
                pending.discard(target)
                done.add(target)
                owner = target_owner(target)
                frags = [Fragment(target, order, data) for order, data in state.fragments_of(name, target)]
                if not frags and target not in fixed:
                    fed = self._drop(renderer, owner, desired)
                else:
                    self.targets_assembled += 1
                    part = renderer.assemble(target, frags, self.ctx)
                    fed = self._render(renderer, owner, part, desired, level=level)
                for t in fed:
                    if t in done:
                        raise ValueError(f"{name}: {target} feeds {t}, which is not a higher level")
                    pending.add(t)

    def _render(
        self, renderer: Renderer, owner: str, part: Part, desired: dict[str, list[Output]], level: int = 0
    ) -> set[str]:
        """Record what ``owner`` rendered; returns the targets whose fragments changed."""
        if owner.startswith("p:"):
            self.parts_rendered += 1
        name = renderer.name
        for f in part.fragments:
            if renderer.level(f.target) <= level:
                raise ValueError(f"{name}: {owner} feeds {f.target}, which is not a higher level")
        desired[owner_key(name, owner)] = part.outputs
        self.state.set_owner(name, owner, True)
        new = {(f.target, f.order, f.data) for f in part.fragments}
        if len(new) != len(part.fragments):
            raise ValueError(f"{name}: {owner} emits the same fragment twice")
        old = set(self.state.fragments_from(name, owner))
        if new == old:
            return set()
        if len({(t, o) for t, o, _d in new}) != len(new):
            raise ValueError(f"{name}: {owner} emits two fragments with one order in one target")
        self.state.replace_fragments(name, owner, sorted(new))
        return {t for t, _o, _d in new ^ old}

    def _drop(self, renderer: Renderer, owner: str, desired: dict[str, list[Output]]) -> set[str]:
        """``owner`` is gone: no outputs, no fragments; returns the targets it fed."""
        name = renderer.name
        desired[owner_key(name, owner)] = []
        self.state.set_owner(name, owner, False)
        old = self.state.fragments_from(name, owner)
        if old:
            self.state.replace_fragments(name, owner, [])
        return {t for t, _o, _d in old}
