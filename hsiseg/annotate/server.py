"""The annotation web app: a Starlette application over an :class:`~hsiseg.annotate.session.AnnotationSession`.

Security, because it is a server:

- every request needs the session token: the page in the query string (``/?token=...``, as Jupyter prints
  it), every API call in the ``X-Hsiseg-Token`` header; no token or a wrong one is 403;
- state-changing requests are POST with the token in the header, which another web page cannot send
  (no cross-site request forgery); no CORS headers are ever sent;
- request bodies are bounded (:data:`MAX_BODY` bytes), and samples are addressed by their index in the spec,
  so no path from a request reaches the file system; files are read and written only where the spec points,
  inside its root (:mod:`hsiseg.dataset.spec`);
- names from trees and files reach the page as JSON and are shown as text, never as markup.

The page (``static/``) ships inside the wheel: no CDN, hospital machines are offline.
"""

from __future__ import annotations

import hmac
import json
import secrets
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from hsiseg.annotate.layers import LayerConflict, StrokeEdit
from hsiseg.annotate.session import AnnotationSession
from hsiseg.annotate.worker import LiveWorker
from hsiseg.errors import HsisegError
from hsiseg.render.overlay import node_colours

TOKEN_HEADER = "X-Hsiseg-Token"
MAX_BODY = 1 << 20  # bytes of a request body (a stroke of 20,000 points is about 400 kB of JSON)


class AppState:
    """What the routes share: the session, its worker, the token and where final models go."""

    def __init__(self, session: AnnotationSession, worker: LiveWorker, token: str, runs: Path) -> None:
        self.session, self.worker, self.token, self.runs = session, worker, token, runs


def create_app(session: AnnotationSession, worker: LiveWorker, token: str | None = None,
               runs: Path | None = None) -> Starlette:  # fmt: skip
    """The web app; ``token`` (a fresh random one by default) is in ``app.state.hsiseg.token``; final models are
    written under ``runs`` (default: ``runs/`` beside the spec)."""
    state = AppState(session, worker, token or secrets.token_urlsafe(24), runs or session.spec_path.parent / "runs")
    routes = [
        Route("/", page),
        Route("/api/session", session_info),
        Route("/api/status", status),
        Route("/api/class-spectra", class_spectra),
        Route("/api/samples/{index:int}/image", image),
        Route("/api/samples/{index:int}/layer", layer),
        Route("/api/samples/{index:int}/codes", codes),
        Route("/api/samples/{index:int}/spectrum", spectrum),
        Route("/api/samples/{index:int}/map", label_map),
        Route("/api/samples/{index:int}/suggestions", suggestions),
        Route("/api/samples/{index:int}/suggestions/{rank:int}/decline", decline, methods=["POST"]),
        Route("/api/samples/{index:int}/strokes", stroke, methods=["POST"]),
        Route("/api/samples/{index:int}/undo", undo, methods=["POST"]),
        Route("/api/samples/{index:int}/redo", redo, methods=["POST"]),
        Route("/api/update", update, methods=["POST"]),
        Route("/api/final", final, methods=["POST"]),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(GZipMiddleware, minimum_size=2048)],
                    exception_handlers={HsisegError: _error, LayerConflict: _conflict})  # fmt: skip
    app.state.hsiseg = state
    app.add_middleware(_TokenCheck, state=state)
    return app


class _TokenCheck:
    """ASGI middleware: 403 without the token (see module docstring); 413 for an oversized body."""

    def __init__(self, app: Any, state: AppState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.headers.get(TOKEN_HEADER, "")
        if not given and request.method == "GET" and scope["path"] == "/":
            given = request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), self.state.token.encode()):
            await JSONResponse({"error": "forbidden: this needs the session token hsiseg annotate printed"},
                               status_code=403)(scope, receive, send)  # fmt: skip
            return
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await JSONResponse({"error": f"request body over {MAX_BODY} bytes"}, status_code=413)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _error(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=400)


def _conflict(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=409)


def _state(request: Request) -> AppState:
    return request.app.state.hsiseg


def _sample(request: Request) -> str:
    ids = _state(request).session.sample_ids()
    index = int(request.path_params["index"])
    if not 0 <= index < len(ids):
        raise HsisegError(f"sample index must be in 0..{len(ids) - 1}, got {index}")
    return ids[index]


async def _body(request: Request) -> dict[str, Any]:
    """The JSON body, read up to :data:`MAX_BODY` bytes (also without a Content-Length)."""
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise HsisegError(f"request body over {MAX_BODY} bytes")
    try:
        body = json.loads(data or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HsisegError("request body: not JSON") from None
    if not isinstance(body, dict):
        raise HsisegError("request body: expected a JSON object")
    return body


def _integer(values: Any, name: str) -> int:
    try:
        return int(values[name])
    except (KeyError, TypeError, ValueError):
        raise HsisegError(f"{name}: expected an integer") from None


# --- routes -----------------------------------------------------------------------------------------------------


def page(request: Request) -> HTMLResponse:
    """The page, with its script and style inlined (one response; every later call carries the token)."""
    folder = resources.files("hsiseg.annotate") / "static"
    html = (folder / "index.html").read_text(encoding="utf-8")
    html = html.replace("/*STYLE*/", (folder / "app.css").read_text(encoding="utf-8"))
    html = html.replace("/*SCRIPT*/", (folder / "app.js").read_text(encoding="utf-8"))
    headers = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
               "script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
               "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}  # fmt: skip
    return HTMLResponse(html, headers=headers)


def session_info(request: Request) -> JSONResponse:
    """The label tree (the palette), the samples and who annotates."""
    session = _state(request).session
    tree, colours = session.tree, node_colours(session.tree)
    nodes = [{"code": n.code, "name": n.name, "parent": n.parent, "depth": n.depth, "leaf": n.code < tree.num_leaves,
              "colour": _hex(colours[n.code])}
             for n in tree.iter_depth_first()]  # fmt: skip
    samples = [{"index": i, "id": sample_id, "subject": session.spec.samples[sample_id].subject}
               for i, sample_id in enumerate(session.sample_ids())]  # fmt: skip
    return JSONResponse({"spec": session.spec.name, "annotator": session.annotator, "leaves": tree.num_leaves,
                         "nodes": nodes, "samples": samples})  # fmt: skip


def _hex(colour: np.ndarray) -> str:
    red, green, blue = (int(round(255 * float(v))) for v in colour)
    return f"#{red:02x}{green:02x}{blue:02x}"


def status(request: Request) -> JSONResponse:
    return JSONResponse(_state(request).worker.status_dict())


def class_spectra(request: Request) -> JSONResponse:
    return JSONResponse(_state(request).session.class_spectra())


def image(request: Request) -> Response:
    query = request.query_params
    band = _integer(query, "band") if query.get("band") else None
    data = _state(request).session.image_png(_sample(request), band)
    return Response(data, media_type="image/png")


def layer(request: Request) -> JSONResponse:
    return JSONResponse(_state(request).session.layer_state(_sample(request)))


def codes(request: Request) -> Response:
    """Strokes as int16 codes: every layer merged, or ``?layer=K`` alone (0: the own layer)."""
    query = request.query_params
    layer = _integer(query, "layer") if query.get("layer") else None
    data = _state(request).session.layer_codes(_sample(request), layer)
    return Response(data, media_type="application/octet-stream")


def spectrum(request: Request) -> JSONResponse:
    query = request.query_params
    return JSONResponse(_state(request).session.spectrum(_sample(request), _integer(query, "x"), _integer(query, "y")))


def label_map(request: Request) -> Response:
    """The live model's map: (H, W) int16 leaf codes, -1 unknown, -2 invalid; the model version, per-class
    share and mean confidence in headers (204 before the first model)."""
    found = _state(request).worker.map_of(_sample(request))
    if found is None:
        return Response(status_code=204)
    version, prediction = found
    labels = prediction.labels_with_unknown()
    summary = {}
    for code in np.unique(labels[labels >= 0]):
        where = labels == code
        summary[int(code)] = [round(float(where.mean()), 4), round(float(prediction.confidence[where].mean()), 3)]
    headers = {"X-Model-Version": str(version), "X-Unknown-Share": f"{prediction.unknown.mean():.4f}",
               "X-Classes": json.dumps(summary, separators=(",", ":"))}  # fmt: skip
    return Response(labels.astype("<i2").tobytes(), media_type="application/octet-stream", headers=headers)


def suggestions(request: Request) -> Response:
    """Where to draw next (``?count=N``, 1-20): ranked regions with reasons and outlines; 204 before a model."""
    query = request.query_params
    count = _integer(query, "count") if query.get("count") else 5
    if not 1 <= count <= 20:
        raise HsisegError(f"count must be in 1..20, got {count}")
    found = _state(request).worker.suggestions(_sample(request), count)
    return Response(status_code=204) if found is None else JSONResponse(found)


def decline(request: Request) -> Response:
    """The suggestion of this rank, as last shown, holds no class of the tree: not suggested again."""
    _state(request).worker.decline(_sample(request), int(request.path_params["rank"]))
    return Response(status_code=204)


async def stroke(request: Request) -> JSONResponse:
    body = await _body(request)
    points = body.get("points")
    if not isinstance(points, list) or not all(isinstance(p, list) for p in points):
        raise HsisegError("points: expected a list of [x, y] pairs")
    try:
        pairs = tuple((float(p[0]), float(p[1])) for p in points if len(p) == 2)
        edit = StrokeEdit(str(body.get("tool")), pairs, body.get("label"), float(body.get("width", 1)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise HsisegError("points and width: expected numbers") from None
    if len(pairs) != len(points):
        raise HsisegError("points: every point must be a pair [x, y]")
    state = _state(request)
    result = state.session.edit(_sample(request), edit, _integer(body, "version"))
    state.worker.request_update()
    return JSONResponse(result)


async def undo(request: Request) -> JSONResponse:
    return await _undo(request, redo=False)


async def redo(request: Request) -> JSONResponse:
    return await _undo(request, redo=True)


async def _undo(request: Request, redo: bool) -> JSONResponse:
    body = await _body(request)
    state = _state(request)
    result = state.session.undo(_sample(request), _integer(body, "version"), redo=redo)
    state.worker.request_update()
    return JSONResponse(result)


async def update(request: Request) -> JSONResponse:
    await _body(request)
    state = _state(request)
    state.worker.request_update()
    return JSONResponse(state.worker.status_dict())


async def final(request: Request) -> JSONResponse:
    """Train the final model into a new run folder ``runs/annotate-<n>``."""
    await _body(request)
    state = _state(request)
    number = 1 + sum(1 for _ in state.runs.glob("annotate-*")) if state.runs.is_dir() else 1
    run_dir = state.runs / f"annotate-{number:03d}"
    while run_dir.exists():
        number += 1
        run_dir = state.runs / f"annotate-{number:03d}"
    state.worker.train_final(run_dir)
    return JSONResponse(state.worker.status_dict())
