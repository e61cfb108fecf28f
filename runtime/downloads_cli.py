"""``depot stats ...``: download statistics (docs/console.md, "Download statistics").

Kept out of runtime/cli.py like the dialects' commands; runtime/cli.py calls :func:`register`
when ``depot stats`` is asked for.
"""

from __future__ import annotations

from pathlib import Path

import click

from builder.cli import Store, store_options


def register(main: click.Group) -> None:
    @main.group("stats")
    def stats() -> None:
        """Download statistics: what the runtime counted, and nginx's access log."""

    @stats.command("import-log")
    @store_options
    @click.argument("log_file", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["nginx"]),
        default="nginx",
        show_default=True,
        help="The access log format: nginx = log_format depot_downloads, as `depot nginx` writes it.",
    )
    def import_log_command(store: Store, log_file: Path, fmt: str) -> None:
        """Add the package downloads nginx served itself, from its access log, to the download
        counts in --data. Only lines not imported before are read (the file's inode and offset
        are remembered), so running it again, from cron or after each rotation, adds only new
        lines."""
        from runtime.downloadlog import import_log
        from runtime.storage import open_database

        db = open_database(store.data)  # runtime.downloads registered its schema on import
        try:
            result = import_log(db, log_file, fmt)  # LogImportError: one line, as every DepotError
        finally:
            db.close()
        click.echo(
            f"{log_file}: {result.lines} new lines (bytes {result.start}-{result.end}), "
            f"{result.counted} downloads added, {result.skipped} lines skipped"
        )
