"""Reading the small text files users write (data specs, label trees, fold and stroke files): UTF-8 only, and a
file in another encoding is one :class:`HsisegError` naming the file and the line of the first bad byte."""

from __future__ import annotations

from pathlib import Path

from hsiseg.errors import HsisegError


def read_utf8(path: str | Path, what: str = "file") -> str:
    """The text of ``path`` (a UTF-8 byte-order mark is dropped); ``what`` names the file in the error
    message (``"the spec"``, ``"the label tree"``)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise HsisegError(
            f"{path}: line {line}: byte 0x{raw[error.start]:02x} is not UTF-8 text; save {what} as UTF-8 "
            "(an editor's 'Save with encoding', or iconv -f latin1 -t utf-8)"
        ) from None
