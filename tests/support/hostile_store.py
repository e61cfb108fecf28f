"""A store an attacker controls: it serves a built site/ as a CDN edge would, except for the
paths the test tells it to answer otherwise (an old file, another build's file, forged bytes).
What it serves is decided per request, so one agent can be fed an honest store and then an
attack without restarting anything."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit


class HostileStore:
    def __init__(self, site: Path) -> None:
        self.site = site
        self.overrides: dict[str, bytes] = {}  # site path → the bytes served instead
        self.requests: list[str] = []
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = unquote(urlsplit(self.path).path).lstrip("/")
                store.requests.append(path)
                body = store.body(path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def body(self, path: str) -> bytes | None:
        if path in self.overrides:
            return self.overrides[path]
        file = (self.site / path).resolve()
        if not file.is_relative_to(self.site.resolve()) or not file.is_file():
            return None
        return file.read_bytes()

    @contextlib.contextmanager
    def running(self) -> Iterator[HostileStore]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
