"""What hsiseg wrote into a folder, so that ``--overwrite`` removes that and nothing else.

A command that owns a whole folder (``hsiseg demo``) keeps a manifest, ``FOLDER/.hsiseg-manifest.json``:
every file below the folder that it wrote, with its size. :func:`clear_owned` removes exactly those files
(and folders left empty) after checking that nothing else is there: a file not in the manifest, or one whose
size changed since hsiseg wrote it, belongs to someone else, and the whole clearing is refused naming it,
before anything is deleted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path

MANIFEST = ".hsiseg-manifest.json"


def files_below(folder: Path) -> dict[str, int]:
    """Relative POSIX path -> size of every file below ``folder`` (the manifest itself excluded)."""
    found = {}
    for root, folders, names in os.walk(folder):  # links to folders are entries, never walked into
        for name in [*names, *(name for name in folders if (Path(root) / name).is_symlink())]:
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            if relative != MANIFEST:
                found[relative] = path.lstat().st_size
    return found


def record_owned(folder: Path) -> None:
    """Write the manifest: every file below ``folder`` now (call it when the folder held nothing foreign
    before the command began, i.e. after :func:`clear_owned` or in a new folder; and after each stage, so a
    run killed midway leaves at most one stage's files unlisted)."""
    files = files_below(folder)  # before the manifest's own temporary file exists
    with atomic_path(folder / MANIFEST) as temporary:
        temporary.write_text(json.dumps({"files": files}, indent=1, sort_keys=True))


def owned_files(folder: Path) -> dict[str, int]:
    """The manifest's files (empty when there is no readable manifest)."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = data["files"]
        return {str(path): int(size) for path, size in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def foreign_files(folder: Path) -> dict[str, int]:
    """Files below ``folder`` that hsiseg did not write (not in the manifest, or changed in size since)."""
    owned = owned_files(folder)
    return {path: size for path, size in files_below(folder).items() if owned.get(path) != size}


def clear_owned(folder: Path, purpose: str) -> None:
    """Remove every file hsiseg wrote below ``folder`` (see module docstring); refuse, deleting nothing,
    when anything else is there. ``purpose`` names the option in the message (e.g. ``overwrite``).

    Only files found below ``folder`` (symbolic links to folders are not followed) are ever removed: a
    manifest entry naming anything else (``../x``, an absolute path, a path through a link) is ignored.
    """
    if not folder.exists():
        return
    foreign = sorted(foreign_files(folder))
    if foreign:
        others = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        unlisted = "" if owned_files(folder) else " (there is no readable manifest: a run killed early lists nothing)"
        raise HsisegError(
            f"{folder / foreign[0]}{others}: not written by hsiseg here (or changed since){unlisted}; {purpose} "
            "deletes only hsiseg's own files, so move these elsewhere, delete them yourself, or choose another folder"
        )
    for relative in sorted(files_below(folder), reverse=True):  # every one of them is listed (checked above)
        (folder / relative).unlink(missing_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    for root, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):  # deepest first
        if Path(root) != folder and not Path(root).is_symlink() and not any(Path(root).iterdir()):
            Path(root).rmdir()
