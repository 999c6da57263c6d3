"""One way to keep things by name: losses, models, cube readers, OOD scores, recording readers, frame writers
and exporters are each a :class:`Registry`.

A registry maps a name to an entry (a class or a function) with optional metadata (file suffixes, when a
writer runs, what an exporter needs). ``registry.check(name, options)`` validates a name and its options
before any data is read, with the closest valid name as a hint (as MONAI's ``look_up_option`` does): a typo
in ``--loss`` is found in milliseconds, not after every cube is loaded.

Adding an entry is one decorator in the entry's own module::

    @LOSSES.register("my-loss")
    class MyLoss(TreeLoss): ...

The package's ``__init__`` imports its modules, so every built-in entry is registered once the package is.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

from hsiseg.errors import HsisegError

Entry = TypeVar("Entry")


class Registry(MutableMapping[str, Entry], Generic[Entry]):
    """Name -> entry, with per-entry metadata: a mapping plus :meth:`register` and :meth:`check` (setting an
    item replaces an entry and keeps its metadata, as tests that stand in a broken reader do).

    ``kind`` names what is registered in error messages ("loss", "model", "OOD score", ...).
    ``skip``: constructor parameters that are not user options (e.g. the tree a loss is built on).
    """

    def __init__(self, kind: str, skip: Iterable[str] = ()) -> None:
        self.kind = kind
        self.skip = frozenset(skip) | {"self"}
        self._entries: dict[str, Entry] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[Entry], Entry]:
        """Decorator: add ``entry`` as ``name`` (default: the entry's ``name`` attribute) with ``meta``
        (e.g. ``suffixes=(".npy",)``)."""

        def add(entry: Entry) -> Entry:
            self.add(name if name is not None else entry.name, entry, **meta)  # type: ignore[attr-defined]
            return entry

        return add

    def add(self, name: str, entry: Entry, **meta: Any) -> None:
        """Add ``entry`` as ``name``; a second entry of the same name is a programming error."""
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        self._meta[name] = meta

    def meta(self, name: str) -> dict[str, Any]:
        """The metadata ``name`` was registered with."""
        return self._meta[self.check(name)]

    def check(self, name: str, options: Mapping[str, Any] | None = None, parameter: str | None = None) -> str:
        """``name`` when it is registered and accepts every option in ``options``; otherwise an
        :class:`HsisegError` naming the closest valid name or the valid options. ``parameter`` names the
        setting in the message (default: the registry's kind)."""
        label = parameter or self.kind
        if name not in self._entries:
            hint = self._hint(name, self._entries)
            raise HsisegError(f"unknown {label} {name!r}; choose one of {sorted(self)}{hint}")
        if options:
            accepted = self.options(name)
            unknown = sorted(set(options) - set(accepted))
            if unknown:
                hints = "".join(self._hint(option, accepted) for option in unknown[:1])
                raise HsisegError(f"{self.kind} {name!r} has no option(s) {unknown}; its options are "
                                  f"{sorted(accepted)}{hints}")  # fmt: skip
        return name

    def options(self, name: str) -> dict[str, Any]:
        """The keyword options ``name`` accepts, with their defaults (``inspect.Parameter.empty`` if none)."""
        entry: Any = self._entries[name]
        target = entry.__init__ if inspect.isclass(entry) else entry
        parameters = inspect.signature(target).parameters.values()
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {p.name: p.default for p in parameters if p.kind in keyword and p.name not in self.skip}

    @staticmethod
    def _hint(name: str, valid: Iterable[str]) -> str:
        close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
        return f"; did you mean {close[0]!r}?" if close else ""

    def lookup(self, name: str, parameter: str | None = None) -> Entry:
        """The entry ``name``, or the :class:`HsisegError` of :meth:`check`."""
        return self._entries[self.check(name, parameter=parameter)]

    def __getitem__(self, name: str) -> Entry:
        return self._entries[name]

    def __setitem__(self, name: str, entry: Entry) -> None:
        self._entries[name] = entry
        self._meta.setdefault(name, {})

    def __delitem__(self, name: str) -> None:
        del self._entries[name]
        del self._meta[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self)})"
