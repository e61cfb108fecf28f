"""The device reports back: what it has installed, what it is offered, how each task ended.

An enrolled device (``--device-token``, from ``depot device add``) sends a report to the store
runtime (``POST /device/api/v1/reports``) when it starts and after every task. Reports are
written to the agent's database first (the outbox) and sent from there in order by one
thread, so a report made while the store is unreachable, or before a power cut, is sent later,
and the order the store sees is the order things happened. Each report has an id the device
makes once (``task-<id>``, ``start-<n>``); the store counts a report id once, so a report
re-sent after its answer was lost counts once.

The store's answer names the device and its groups; the agent keeps them (facts) because they
decide which staged rollouts it is offered (runtime.agent.rollout).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from importlib import metadata
from typing import Any

import httpx

from builder.atomic import atomic_write
from runtime.agent.config import DEVICE, AgentConfig
from runtime.agent.state import State

log = logging.getLogger("runtime.agent")

MAX_ANSWER = 64 * 1024
MAX_DELAY = 300.0  # the back-off while the store is unreachable starts at --retry-delay
# Answers that mean "this report will never be taken": it is dropped so the ones after it go.
REFUSED_FOR_GOOD = frozenset({400, 404, 413, 422})


def agent_version() -> str:
    try:
        return metadata.version("depot")
    except metadata.PackageNotFoundError:
        return "unknown"


class Reporter:
    def __init__(self, config: AgentConfig, state: State) -> None:
        self.config, self.state = config, state
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self.config.device_token is not None

    # -- who this device is -----------------------------------------------------------------

    def identity(self) -> tuple[str, tuple[str, ...]]:
        """(device id, groups) for rollout decisions: the store's word once it answered,
        else the command line, else an id made once for this device."""
        name = self.state.fact("device") or self.config.device_id or self._local_id()
        groups = self.state.fact("groups")
        return name, tuple(json.loads(groups)) if groups is not None else self.config.groups

    def _local_id(self) -> str:
        path = self.config.device_id_file
        try:
            value = path.read_text(encoding="ascii").strip()
            if DEVICE.fullmatch(value):
                return value
        except (OSError, UnicodeDecodeError):
            pass
        value = "device-" + secrets.token_hex(8)
        atomic_write(path, value.encode() + b"\n")
        return value

    # -- the outbox -------------------------------------------------------------------------

    def queue(self, report_id: str, body: dict[str, Any]) -> None:
        if not self.enabled:
            return
        report = {
            "report_id": report_id,
            "agent_version": agent_version(),
            "platform": self.config.platform or "",
            **body,
        }
        self.state.queue_report(report_id, json.dumps(report, sort_keys=True))
        self._wake.set()

    def next_start_id(self) -> str:
        n = int(self.state.fact("starts") or "0") + 1
        self.state.set_fact("starts", str(n))
        return f"start-{n}"

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="agent-reports", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        first = max(self.config.retry_delay, 0.01)
        delay = first
        with httpx.Client(timeout=self.config.timeout, follow_redirects=False) as client:
            while not self._stop.is_set():
                waiting = self.state.next_report()
                if waiting is None:
                    self._wake.wait(60.0)
                    self._wake.clear()
                    continue
                seq, report_id, body = waiting
                if self._send(client, report_id, body):
                    self.state.report_sent(seq)
                    delay = first
                    continue
                self._wake.wait(delay)  # a new report does not skip the back-off of the old one
                self._wake.clear()
                delay = min(delay * 2, MAX_DELAY)

    def _send(self, client: httpx.Client, report_id: str, body: str) -> bool:
        """True when the report is done with (taken, or refused for good)."""
        try:
            response = client.post(
                self.config.reports_url,
                content=body.encode(),
                headers={
                    "Authorization": f"Bearer {self.config.device_token}",
                    "Content-Type": "application/json",
                },
            )
            answer = response.content[:MAX_ANSWER]
        except httpx.HTTPError as exc:
            self.last_error = f"cannot reach the store for reports: {type(exc).__name__}: {exc}"
            log.info("reports: %s", self.last_error)
            return False
        if response.status_code == 200:
            self.last_error = None
            self._learn(answer)
            return True
        self.last_error = f"the store answered {response.status_code} to report {report_id}"
        if response.status_code in REFUSED_FOR_GOOD:
            log.warning("reports: %s (%s); dropped", self.last_error, answer[:300].decode("utf-8", "replace"))
            return True
        log.info("reports: %s; retrying later", self.last_error)  # 401, 429, 5xx: may change
        return False

    def _learn(self, answer: bytes) -> None:
        """Keep the device name and groups the store states, when they are well formed."""
        try:
            data = json.loads(answer)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        name, groups = data.get("device"), data.get("groups")
        if isinstance(name, str) and DEVICE.fullmatch(name):
            self.state.set_fact("device", name)
        if isinstance(groups, list) and all(isinstance(g, str) and DEVICE.fullmatch(g) for g in groups):
            self.state.set_fact("groups", json.dumps(sorted(groups)))
