"""Plan a repo in memory with builder.plan.plan_all: every output's bytes, nothing written."""

from __future__ import annotations

from pathlib import Path

from builder.build import template_environment
from builder.plan import plan_all
from builder.registry import renderers
from builder.render import RenderContext
from builder.scan import Scanner
from builder.settings import load_settings


def plan_site(repo: Path) -> dict[str, bytes]:
    """site path → bytes of every output a clean build of ``repo`` plans (package files are
    read from repo/), without the route table and the signed metadata."""
    settings = load_settings(repo)
    records = Scanner(repo).scan(settings).records
    env, digest = template_environment()
    ctx = RenderContext(settings=settings, repo=repo, templates=env, template_digest=digest)
    files: dict[str, bytes] = {}
    for out in plan_all(renderers(), records, ctx):
        if out.path in files:
            raise AssertionError(f"two outputs claim {out.path}")
        if out.source is not None:
            files[out.path] = out.source.read_bytes()
        else:
            assert out.render is not None
            files[out.path] = out.render()
    return files
