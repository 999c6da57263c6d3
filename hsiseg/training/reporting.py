"""Where training progress goes: the CLI shows a rich display, JSON lines, or nothing."""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    """Where training progress goes (the CLI shows a rich display, JSON lines, or nothing)."""

    def start(self, total_steps: int, first_step: int) -> None: ...
    def step(self, step: int, loss: float, items_per_second: float) -> None: ...
    def round_end(self, row: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    def start(self, total_steps: int, first_step: int) -> None:
        pass

    def step(self, step: int, loss: float, items_per_second: float) -> None:
        pass

    def round_end(self, row: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass
