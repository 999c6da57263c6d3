"""``hsiseg annotate``: the annotation web app (scribbles, a live model, the map in seconds)."""

from __future__ import annotations

import getpass
import ipaddress
import secrets
import socket
from pathlib import Path
from typing import Annotated

import typer

from hsiseg.errors import HsisegError

from .errors import reports_errors


def _default_annotator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "annotator"


@reports_errors
def annotate(
    spec: Annotated[Path | None, typer.Argument(help="Data spec to annotate (label-image annotations), or a folder "
                                                    "of cubes with --tree.")] = None,  # fmt: skip
    tree: Annotated[Path | None, typer.Option(help="Label tree for a folder of cubes or a recording: writes "
                                                   "FOLDER/annotate.yaml (reused next time).")] = None,  # fmt: skip
    camera: Annotated[Path | None, typer.Option(help="Camera file of a snapshot-mosaic recording given as SPEC.")] = (
        None
    ),
    every: Annotated[int, typer.Option(help="A recording: annotate every N-th frame.")] = 25,
    demo: Annotated[bool, typer.Option("--demo", help="Annotate the synthetic demo (written on first use).")] = False,
    demo_folder: Annotated[Path, typer.Option(help="Where --demo keeps its scene.")] = Path("hsiseg-annotate-demo"),
    annotator: Annotated[str, typer.Option(help="Your name: your strokes go to annotations/<sample>/<name>.png.")] = "",
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback is reachable by others.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8765,
    runs: Annotated[Path | None, typer.Option(help="Where 'train the final model' writes runs (default: runs/ "
                                                   "beside the spec).")] = None,  # fmt: skip
) -> None:
    """Scribble on hyperspectral images in the browser, with the label tree as the palette; a live model trains
    on the strokes in the background and shows its map, unknown tissue hatched. Prints the page's address with
    a session token, as Jupyter does; Ctrl-C stops the server (every stroke is already saved)."""
    import uvicorn

    from hsiseg.annotate import AnnotationSession, LiveWorker
    from hsiseg.annotate.server import create_app

    if (spec is None) == (not demo):
        raise HsisegError("give a data spec, or --demo (not both)")
    spec_path = _scene(spec, demo, demo_folder, tree, camera, every)
    session = AnnotationSession(spec_path, annotator or _default_annotator())
    worker = LiveWorker(session)
    token = secrets.token_urlsafe(24)
    app = create_app(session, worker, token, runs)
    listener = _listen(host, port)
    bound = listener.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    if not _is_loopback(host):
        warning = (f"hsiseg: warning: listening on {host}: anyone who can reach this machine and has the token can "
                   "read and change the annotations (use an SSH tunnel instead, see the README)")  # fmt: skip
        typer.echo(warning, err=True)
    typer.echo(f"annotating {spec_path} as {session.annotator}; open in a browser:")
    typer.echo(f"    http://{shown}:{bound}/?token={token}")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[listener])
    finally:
        worker.stop()


def _scene(spec: Path | None, demo: bool, demo_folder: Path, tree: Path | None, camera: Path | None,
           every: int) -> Path:  # fmt: skip
    """The spec to annotate: given, the demo's, or written for a folder of cubes or a recording."""
    from hsiseg.annotate.demo import demo_scene, folder_scene, recording_scene

    if demo:
        return demo_scene(demo_folder)
    assert spec is not None
    if camera is not None:
        if tree is None:
            raise HsisegError("a recording needs --tree TREE.yaml (the label tree to draw with) beside --camera")
        return recording_scene(spec, camera, tree, every)
    if spec.is_dir():
        if tree is None and not (spec / "annotate.yaml").is_file():
            raise HsisegError(f"{spec}: a folder of cubes needs --tree TREE.yaml (the label tree to draw with)")
        return folder_scene(spec, tree) if tree is not None else spec / "annotate.yaml"
    if tree is not None:
        raise HsisegError("--tree goes with a folder of cubes or a recording (--camera), not with a data spec")
    return spec


def _listen(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise HsisegError(f"--port must be in 0..65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise HsisegError(f"--host {host} --port {port}: cannot listen there ({error.strerror}); "
                          "choose another port (0: any free one)") from None  # fmt: skip
    listener.listen(64)
    return listener


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
