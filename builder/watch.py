"""``depot watch``: one rebuild per burst of changes, whatever the burst's size.

The watcher's events are the build's change feed (``build(changed=...)``): the rebuild stats the
files the events name, not every file of repo/, so it costs the same at any store size. A burst
of more than FEED_LIMIT paths, or an event the watcher could not place, walks repo/ instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)


FEED_LIMIT = 10_000


class _Debouncer(FileSystemEventHandler):
    def __init__(self, debounce: float, root: Path) -> None:
        self.debounce = debounce
        self.root = str(root.resolve())
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._paths: set[str] | None = set()  # None: walk repo/

    def on_any_event(self, event: FileSystemEvent) -> None:
        name = str(event.src_path).rsplit("/", 1)[-1]
        if event.event_type in ("opened", "closed_no_write") or name.startswith(".tmp-"):
            return  # reads and our own temporary files are not changes
        with self._lock:
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                path = raw.decode() if isinstance(raw, bytes) else str(raw)
                if not path or self._paths is None:
                    continue
                if (
                    path == self.root
                    or not path.startswith(self.root + "/")
                    or len(self._paths) >= FEED_LIMIT
                ):
                    self._paths = None
                else:
                    self._paths.add(path[len(self.root) + 1 :])
        self.changed.set()

    def take(self) -> list[str] | None:
        """The paths the events named since the last call (None: walk repo/)."""
        with self._lock:
            paths, self._paths = self._paths, set()
        return sorted(paths) if paths is not None else None


def watch(
    repo: Path,
    rebuild: Callable[[list[str] | None], None],
    debounce: float = 0.3,
    stop: threading.Event | None = None,
) -> None:
    """Call ``rebuild(changed)`` after each burst of changes below ``repo``: once the tree has
    been quiet for ``debounce`` seconds; ``changed`` is the paths the burst touched, relative to
    repo/ (None: walk it). A rebuild that raises is logged and the watch goes on. Returns when
    ``stop`` is set or on Ctrl-C."""
    handler = _Debouncer(debounce, repo)
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
                    rebuild(handler.take())
                except Exception:  # a failed rebuild must not end the watch: the next change retries
                    log.exception("rebuild failed; watching on")
    except KeyboardInterrupt:
        pass
    finally:
        observer.stop()
        observer.join()
