"""The device app-store API under ``/app_store`` (paths, shapes and status codes of the spec).

Task logs are read by character (code point) ranges, ``start`` inclusive and ``end`` exclusive,
so a range never splits a character; ``X-TEXT-SIZE`` counts characters, ``X-MORE-DATA`` is
``false`` only when the task is finished and nothing remains past ``end``. A standard
``Range: bytes=`` request is answered over the UTF-8 bytes with 206/416, and every log answer
carries ``X-TASK-STATUS``.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from runtime.agent.state import TERMINAL, Task
from runtime.agent.tasks import Agent, RequestError

PREFIX = "/app_store"
KIND_OF_JOB = {"download": ("download",), "install": ("install",), "uninstall": ("uninstall",)}
BYTE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def agent(request: Request) -> Agent:
    return request.app.state.agent


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return None


async def packages(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(agent(request).packages, "module"))


async def firmware_packages(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(agent(request).packages, "firmware"))


async def refresh_store(request: Request) -> Response:
    agent(request).refresh_async()
    return JSONResponse({"status": 200})


def _service(method_name: str, status: int = 201) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        body = await _json_body(request)
        try:
            result = await run_in_threadpool(getattr(agent(request), method_name), body)
        except RequestError as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        return JSONResponse(result, status_code=status)

    return endpoint


def _task_json(request: Request, job: str, task: Task) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": task.id,
        "status": task.status,
        "module": task.module,
        "version": task.version,
        "create_time": task.create_time,
        "start_time": task.start_time,
        "end_time": task.end_time,
        "url": str(request.url_for("task_log", job=job, task_id=task.id)),
    }
    if task.target == "firmware":
        view["firmware"] = True
    if task.reason:
        view["reason"] = task.reason
    return view


async def task_list(request: Request) -> Response:
    job = request.path_params["job"]
    if job not in KIND_OF_JOB:
        return JSONResponse({"error": f"unknown job kind {job!r}"}, status_code=404)
    tasks = await run_in_threadpool(agent(request).state.tasks, KIND_OF_JOB[job])
    return JSONResponse([_task_json(request, job, t) for t in tasks])


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"\d+", raw):
        raise ValueError(f"{name} must be a non-negative integer")
    return int(raw)


async def task_log(request: Request) -> Response:
    job = request.path_params["job"]
    task_id = request.path_params["task_id"]
    state = agent(request).state
    task = await run_in_threadpool(state.task, task_id)
    if job not in KIND_OF_JOB or task is None or task.kind not in KIND_OF_JOB[job]:
        return JSONResponse({"error": f"no {job} task {task_id}"}, status_code=404)
    text = await run_in_threadpool(state.log_text, task_id)
    finished = task.status in TERMINAL
    headers = {"X-TASK-STATUS": task.status, "Accept-Ranges": "bytes"}
    if not finished:
        headers["X-POLL-AFTER-MS"] = "500"
    media = "text/plain; charset=utf-8"
    byte_range = request.headers.get("range")
    if byte_range and "start" not in request.query_params and "end" not in request.query_params:
        data = text.encode("utf-8")
        match = BYTE_RANGE.match(byte_range.strip())
        if match and (match[1] or match[2]):
            size = len(data)
            if match[1]:
                first = int(match[1])
                last = min(int(match[2]), size - 1) if match[2] else size - 1
            else:  # suffix range: the last N bytes
                first, last = max(size - int(match[2]), 0), size - 1
            headers["X-TEXT-SIZE"] = str(len(text))
            if first >= size or last < first:
                headers["Content-Range"] = f"bytes */{size}"
                headers["X-MORE-DATA"] = "false" if finished else "true"
                return Response(b"", status_code=416, headers=headers, media_type=media)
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            headers["X-MORE-DATA"] = "true" if (not finished or last + 1 < size) else "false"
            return Response(data[first : last + 1], status_code=206, headers=headers, media_type=media)
    try:
        start = _int_param(request, "start") or 0
        end = _int_param(request, "end")
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    size = len(text)
    end = size if end is None else min(end, size)
    start = min(start, size)
    end = max(end, start)
    headers["X-TEXT-SIZE"] = str(size)
    headers["X-MORE-DATA"] = "true" if (not finished or end < size) else "false"
    return Response(text[start:end].encode("utf-8"), headers=headers, media_type=media)


class Guard(BaseHTTPMiddleware):
    """With a secret: every request carries it in ``Secret``. Without one: loopback clients only."""

    def __init__(self, app: ASGIApp, secret: str | None) -> None:
        super().__init__(app)
        self.secret = secret.encode() if secret else None

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.secret is not None:
            given = request.headers.get("secret", "").encode()
            if not hmac.compare_digest(given, self.secret):
                return JSONResponse({"error": "missing or wrong Secret header"}, status_code=401)
        elif not _loopback(request.client.host if request.client else ""):
            return JSONResponse(
                {"error": "this agent has no secret configured and serves only this device (loopback)"},
                status_code=403,
            )
        return await call_next(request)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_agent_app(the_agent: Agent, start: bool = True) -> Starlette:
    """The ASGI app; its lifespan recovers interrupted tasks and starts the two queues."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if start:
            await run_in_threadpool(the_agent.start)
        yield
        the_agent.stop()

    routes = [
        Route("/packages", packages),
        Route("/services/refresh_store", refresh_store, methods=["POST"]),
        Route("/services/download_packages", _service("request_download"), methods=["POST"]),
        Route("/services/install_packages", _service("request_install"), methods=["POST"]),
        Route("/services/uninstall_packages", _service("request_uninstall"), methods=["POST"]),
        Route("/services/install_local_file", _service("install_local_file", status=200), methods=["POST"]),
        Route("/firmware/packages", firmware_packages),
        Route("/firmware/install_packages", _service("request_firmware"), methods=["POST"]),
        Route("/jobs/{job}/tasks", task_list),
        Route("/jobs/{job}/tasks/{task_id:int}/log", task_log, name="task_log"),
    ]
    app = Starlette(
        routes=[Mount(PREFIX, routes=routes)],
        middleware=[Middleware(Guard, secret=the_agent.config.secret)],
        lifespan=lifespan,
    )
    app.state.agent = the_agent
    return app
