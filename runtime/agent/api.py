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

from builder.jsonsafe import JsonError, loads_json
from runtime.agent.config import host_name
from runtime.agent.state import TERMINAL, Task
from runtime.agent.tasks import Agent, RequestError

PREFIX = "/app_store"
KIND_OF_JOB = {"download": ("download",), "install": ("install",), "uninstall": ("uninstall",)}
BYTE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def agent(request: Request) -> Agent:
    return request.app.state.agent


MAX_BODY = 64 * 1024  # a request names packages or a file: a few hundred bytes


async def _json_body(request: Request) -> Any:
    """The JSON body, read under a cap and parsed with bounded nesting; None when it is not
    usable (the endpoint answers 400 with what it expected)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    try:
        return loads_json(b"".join(chunks) or b"null")
    except JsonError:
        return None


def _package_list(views: list[dict[str, Any]], error: str | None) -> Response:
    """The spec's list; when the last refresh was refused, each line has ``store_error`` and
    the header ``X-Store-Error`` says it too (also when the list is empty)."""
    headers = {"X-Store-Error": error.encode("ascii", "replace").decode()[:500]} if error else None
    return JSONResponse(views, headers=headers)


async def packages(request: Request) -> Response:
    the_agent = agent(request)
    return _package_list(await run_in_threadpool(the_agent.packages, "module"), the_agent.index_error)


async def firmware_packages(request: Request) -> Response:
    the_agent = agent(request)
    return _package_list(await run_in_threadpool(the_agent.packages, "firmware"), the_agent.index_error)


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


DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK_NAMES = frozenset({"localhost"})
JSON_TYPE = "application/json"


def _host_and_port(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` or ``[v6]:port`` (a Host header or an origin's authority) → the
    canonical name and the port, or None when it is neither."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
    else:
        name, sep, port_text = value.partition(":")
        rest = sep + port_text
    port = None
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
            return None
        port = int(rest[1:])
    canonical = host_name(name)
    return (canonical, port) if canonical else None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


class Guard(BaseHTTPMiddleware):
    """Who may talk to the agent, checked in this order on every request:

    1. ``Host`` names this agent (loopback names and addresses, or ``--allowed-host``), else
       421: a page on a DNS-rebound name never reaches the API;
    2. no cross-site browser request: ``Sec-Fetch-Site: cross-site``/``same-site`` or an
       ``Origin`` that is neither this agent's own origin nor an allowed host is 403, on every
       method (reads included: nothing of the API is for other web sites);
    3. the secret (401), or without one loopback clients only (403);
    4. a body must be ``Content-Type: application/json`` (415): a ``no-cors`` page can only
       send text/plain, form or multipart bodies.
    """

    def __init__(self, app: ASGIApp, secret: str | None, allowed_hosts: tuple[str, ...] = ()) -> None:
        super().__init__(app)
        self.secret = secret.encode() if secret else None
        self.allowed_hosts = frozenset(allowed_hosts)

    def _known(self, name: str) -> bool:
        return name in LOOPBACK_NAMES or _loopback(name) or name in self.allowed_hosts

    def _origin_allowed(self, origin: str, host: tuple[str, int | None]) -> bool:
        scheme, sep, authority = origin.strip().lower().partition("://")
        if not sep or scheme not in DEFAULT_PORTS or "/" in authority or "@" in authority:
            return False  # "null" (sandboxed pages, file://) and anything odd included
        parsed = _host_and_port(authority)
        if parsed is None:
            return False
        name, port = parsed
        if name in self.allowed_hosts:
            return True
        # the agent's own origin: a page it served itself (through a same-origin proxy)
        return (name, port or DEFAULT_PORTS[scheme]) == (host[0], host[1] or DEFAULT_PORTS[scheme])

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        raw_host = request.headers.get("host", "")
        host = _host_and_port(raw_host)
        if host is None or not self._known(host[0]):
            return _refuse(
                421,
                f"this agent does not answer to the host name {raw_host[:100]!r}; it answers to "
                "localhost, loopback addresses and the names given with --allowed-host",
            )
        site = request.headers.get("sec-fetch-site", "").strip().lower()
        if site in ("cross-site", "same-site"):
            return _refuse(403, f"requests from other web sites are refused (Sec-Fetch-Site: {site})")
        origin = request.headers.get("origin")
        if origin is not None and not self._origin_allowed(origin, host):
            return _refuse(403, f"requests from the web origin {origin[:100]!r} are refused")
        if self.secret is not None:
            given = request.headers.get("secret", "").encode()
            if not hmac.compare_digest(given, self.secret):
                return _refuse(401, "missing or wrong Secret header")
        elif not _loopback(request.client.host if request.client else ""):
            return _refuse(403, "this agent has no secret configured and serves only this device (loopback)")
        length = request.headers.get("content-length", "").strip()
        has_body = "transfer-encoding" in request.headers or (length not in ("", "0"))
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if has_body and media_type != JSON_TYPE:
            return _refuse(415, f"a request body must be sent as Content-Type: {JSON_TYPE}")
        return await call_next(request)


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
        middleware=[
            Middleware(Guard, secret=the_agent.config.secret, allowed_hosts=the_agent.config.allowed_hosts)
        ],
        lifespan=lifespan,
    )
    app.state.agent = the_agent
    return app
