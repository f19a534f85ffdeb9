"""The labelling web app: a FastAPI JSON API over a Project, the bundled front end, and its guards.

Guards, outermost first (plain ASGI middleware, so they run before any route):
1. Token: when the server has one (always, off loopback), every request must carry it — header
   ``Authorization: Bearer T``, or ``?token=T`` once, which sets an HttpOnly cookie for the page's
   images — compared in constant time (hmac.compare_digest); otherwise 401.
2. Host: on a loopback bind only loopback host names are served (a DNS-rebinding page cannot reach us).
3. Body size: a request body over ``max_body`` bytes is refused with 413 (declared or streamed).
Writes must be ``application/json``, which a cross-site form cannot send without a CORS preflight
that this server never grants.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from dataclasses import dataclass
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from pixelforge.errors import UsageError
from pixelforge.label.db import check_annotator, check_key
from pixelforge.label.project import TASK_FIELDS, Project

DEFAULT_MAX_BODY = 256 * 1024
TOKEN_COOKIE = "pixelforge_label_token"
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "map.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]"}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # required off loopback
    max_body: int = DEFAULT_MAX_BODY


async def _send_json(send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


class GuardMiddleware:
    """Token, host and body-size checks in front of the app (see the module docstring)."""

    def __init__(self, app, token: str | None, max_body: int, loopback: bool):
        self.app, self.token, self.max_body, self.loopback = app, token, max_body, loopback

    def _token_ok(self, scope) -> tuple[bool, bool]:
        """(authorised, came from the query string) for the request in ``scope``."""
        if self.token is None:
            return True, False
        want = self.token.encode()
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        if auth.lower().startswith(b"bearer ") and hmac.compare_digest(auth[7:].strip(), want):
            return True, False
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # a malformed cookie header is simply no token
            cookie = SimpleCookie()
        if TOKEN_COOKIE in cookie and hmac.compare_digest(cookie[TOKEN_COOKIE].value.encode(), want):
            return True, False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        for candidate in query.get("token", []):
            if hmac.compare_digest(candidate.encode(), want):
                return True, True
        return False, False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        ok, from_query = self._token_ok(scope)
        if not ok:
            return await _send_json(
                send,
                401,
                {
                    "error": "missing or wrong token: open the URL the server printed "
                    "(?token=...) or send Authorization: Bearer TOKEN"
                },
                [(b"www-authenticate", b"Bearer")],
            )
        headers = dict(scope.get("headers") or [])
        if self.loopback and self.token is None:
            host = _host_name(headers.get(b"host", b"").decode("latin-1"))
            if host not in LOOPBACK_NAMES:
                return await _send_json(send, 421, {"error": f"host {host!r} is not this loopback server"})
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await _send_json(send, 413, {"error": f"request body over {self.max_body} bytes"})
        body = b""
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            # read the whole (small) body first, so an oversized one is refused before the app sees it
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    return await _send_json(send, 413, {"error": f"request body over {self.max_body} bytes"})
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_with_cookie(message):
            if from_query and message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()
                message = dict(message, headers=list(message.get("headers", [])) + [(b"set-cookie", cookie)])
            await send(message)

        await self.app(scope, replay, send_with_cookie)


def _host_name(host: str) -> str:
    """The Host header without its port ("[::1]:8765" -> "[::1]", "localhost:80" -> "localhost")."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _static(name: str) -> bytes:
    return resources.files("pixelforge.label").joinpath("static", name).read_bytes()


def create_app(project: Project, config: ServerConfig | None = None):
    """The ASGI app serving ``project`` (FastAPI wrapped in the guards)."""
    config = config or ServerConfig()
    loopback = is_loopback(config.host)
    if not loopback and not config.token:
        raise ValueError(f"binding {config.host} (not loopback) needs a token")
    api = FastAPI(title="pixelforge label", docs_url=None, redoc_url=None, openapi_url=None)

    def bad(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def _json_body(request: Request) -> dict[str, Any] | JSONResponse:
        """The request's JSON object, or the error response saying what is wrong with it."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return bad("send JSON (Content-Type: application/json)", 415)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return bad("the body is not valid JSON")
        if not isinstance(body, dict):
            return bad("the body must be a JSON object")
        return body

    @api.get("/", response_class=HTMLResponse)
    def index() -> Response:
        return Response(
            _static("index.html"),
            media_type="text/html; charset=utf-8",
            headers={
                "cache-control": "no-store",
                "content-security-policy": (
                    "default-src 'self'; img-src 'self' blob:; style-src 'self'; script-src 'self'"
                ),
            },
        )

    @api.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @api.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_FILES:  # a fixed list: no file system path is ever built from a request
            return bad(f"no static file {name!r}", 404)
        return Response(_static(name), media_type=STATIC_FILES[name])

    @api.get("/api/session")
    def session() -> dict[str, Any]:
        return {
            "task": project.task,
            "classes": project.classes,
            "dataset": project.ds.name,
            "fields": list(TASK_FIELDS[project.task]),
            "max_body": config.max_body,  # bulk requests (tagging a selection) are cut to fit
            **project.progress(),
        }

    @api.get("/api/queue")
    def queue(offset: int = 0, limit: int = 500, tag: str | None = None) -> Any:
        if offset < 0 or not 1 <= limit <= 100_000:
            return bad("offset >= 0 and 1 <= limit <= 100000")
        done = project.db.done_keys()
        order = project.order if tag is None else project.tagged(tag)
        keys = order[offset : offset + limit]
        return {
            "offset": offset,
            "tag": tag,
            "keys": keys,
            "finished": [k in done for k in keys],
            **project.progress(),
        }

    @api.get("/api/map")
    def map_points() -> Any:
        try:
            return project.map_points()
        except UsageError as exc:
            return bad(str(exc), 404)

    @api.get("/api/tags")
    def tags() -> Any:
        counts: dict[str, int] = {}
        for names in project.tags().values():
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        return {"tags": dict(sorted(counts.items()))}

    @api.post("/api/tag")
    async def tag(request: Request) -> Any:
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        unknown = set(body) - {"keys", "tag", "annotator", "remove"}
        if unknown:
            return bad(f"unknown fields {sorted(unknown)}")
        keys = body.get("keys")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            return bad("keys: a non-empty list of sample keys")
        remove = body.get("remove", False)
        if not isinstance(remove, bool):
            return bad("remove: true or false")
        try:
            annotator = check_annotator(body.get("annotator"))
            changed = project.tag(keys, body.get("tag"), annotator, remove=remove)
        except KeyError as exc:
            return bad(f"no item {exc.args[0]!r}", 404)
        except ValueError as exc:
            return bad(str(exc))
        return {"ok": True, "changed": changed, "tag": body["tag"].strip()}

    @api.get("/api/item/{key}")
    def item(key: str) -> Any:
        try:
            return project.public_item(key)
        except ValueError as exc:
            return bad(str(exc))
        except KeyError:
            return bad(f"no item {key!r}", 404)

    @api.get("/api/image/{key}")
    def image(key: str, side: str = "a") -> Any:
        if side not in ("a", "b"):
            return bad("side: a or b")
        try:
            data, ctype = project.image(key, side)
        except ValueError as exc:
            return bad(str(exc))
        except KeyError:
            return bad(f"no image {key!r}", 404)
        return Response(
            data,
            media_type=ctype,
            headers={"cache-control": "private, max-age=3600", "x-content-type-options": "nosniff"},
        )

    @api.post("/api/annotate")
    async def annotate(request: Request) -> Any:
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        unknown = set(body) - {"key", "field", "value", "annotator", "base_version", "client_id"}
        if unknown:
            return bad(f"unknown fields {sorted(unknown)}")
        try:
            key = check_key(body.get("key"))
            annotator = check_annotator(body.get("annotator"))
            base = body.get("base_version")
            if base is not None and (not isinstance(base, int) or isinstance(base, bool) or base < 0):
                raise ValueError("base_version: a non-negative integer or null")
            value = project.check_value(key, body.get("field"), body.get("value"))
            saved = project.db.save(key, body["field"], value, annotator, base, body.get("client_id"))
        except KeyError:
            return bad(f"no item {body.get('key')!r}", 404)
        except ValueError as exc:
            return bad(str(exc))
        return {
            "ok": True,
            "id": saved.id,
            "version": saved.version,
            "conflict": saved.conflict,
            "duplicate": saved.duplicate,
            **project.progress(),
        }

    @api.get("/api/history/{key}")
    def history(key: str) -> Any:
        try:
            project.item(key)
        except ValueError as exc:
            return bad(str(exc))
        except KeyError:
            return bad(f"no item {key!r}", 404)
        return {"key": key, "edits": project.db.history(key)}

    @api.get("/api/notices")
    def notices(annotator: str, after: int = 0) -> Any:
        try:
            check_annotator(annotator)
        except ValueError as exc:
            return bad(str(exc))
        return {"notices": project.db.notices(annotator, after)}

    return GuardMiddleware(api, config.token, config.max_body, loopback)


def serve(project: Project, config: ServerConfig) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(project, config), host=config.host, port=config.port, log_level="warning", access_log=False)
