"""Where a long build reports how far it got: the CLI draws a bar on a terminal, tests and the
runtime pass nothing. Reading packages, planning a whole catalog and publishing report to it."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, total: int, label: str) -> None: ...

    def advance(self, n: int) -> None: ...

    def finish(self) -> None: ...
