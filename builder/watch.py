"""``depot watch``: one rebuild per burst of changes, whatever the burst's size."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)


class _Debouncer(FileSystemEventHandler):
    def __init__(self, debounce: float) -> None:
        self.debounce = debounce
        self.changed = threading.Event()

    def on_any_event(self, event: FileSystemEvent) -> None:
        name = str(event.src_path).rsplit("/", 1)[-1]
        if event.event_type in ("opened", "closed_no_write") or name.startswith(".tmp-"):
            return  # reads and our own temporary files are not changes
        self.changed.set()


def watch(
    repo: Path,
    rebuild: Callable[[], None],
    debounce: float = 0.3,
    stop: threading.Event | None = None,
) -> None:
    """Call ``rebuild`` after each burst of changes below ``repo``: once the tree has been quiet
    for ``debounce`` seconds. A rebuild that raises is logged and the watch goes on. Returns
    when ``stop`` is set or on Ctrl-C."""
    handler = _Debouncer(debounce)
    observer = Observer()
    observer.schedule(handler, str(repo), recursive=True)
    observer.start()
    stop = stop or threading.Event()
    try:
        while not stop.is_set():
            if not handler.changed.wait(timeout=0.2):
                continue
            # wait until the burst is over: no event for a whole debounce period
            while True:
                handler.changed.clear()
                if not handler.changed.wait(timeout=debounce) or stop.is_set():
                    break
            if not stop.is_set():
                try:
                    rebuild()
                except Exception:  # a failed rebuild must not end the watch: the next change retries
                    log.exception("rebuild failed; watching on")
    except KeyboardInterrupt:
        pass
    finally:
        observer.stop()
        observer.join()
