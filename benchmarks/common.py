"""Shared measuring helpers for the benchmarks: paired time ratios and peak memory in a fresh process."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def paired_ratio(
    candidate: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> tuple[float, float, float]:
    """Median of candidate/baseline time ratios, alternating the order; also both median times in ms.

    Both are run twice first (warm-up: page cache, allocator, lazy imports).
    """
    for _ in range(2):
        candidate()
        baseline()
    ratios, candidate_times, baseline_times = [], [], []
    for i in range(repeats):
        order = [(candidate, candidate_times), (baseline, baseline_times)]
        if i % 2:
            order.reverse()
        for function, times in order:
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        ratios.append(candidate_times[-1] / baseline_times[-1])
    return statistics.median(ratios), statistics.median(candidate_times) * 1e3, statistics.median(baseline_times) * 1e3


def status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_peak_rise(function: Callable[[], object]) -> int:
    """In this process: bytes by which peak RSS rises over one call (resets the high-water mark first).

    Linux only. Call it in a fresh child process (see :func:`peak_in_child`): ru_maxrss and VmHWM would
    otherwise carry an earlier peak.
    """
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kib("VmRSS")
    function()
    return (status_kib("VmHWM") - before) * 1024


def peak_in_child(script: str, *arguments: str) -> int:
    """Run ``script --child ARGUMENTS`` in a fresh interpreter; it prints one integer (bytes) last."""
    command = [sys.executable, script, "--child", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def interval(differences) -> str:
    """'+0.012 [-0.004, +0.028]': mean and 95% t-interval of paired differences (just the mean for one)."""
    import math

    from scipy.stats import t as student_t

    if len(differences) < 2:
        return f"{differences.mean():+.3f}"
    half = student_t.ppf(0.975, len(differences) - 1) * differences.std(ddof=1) / math.sqrt(len(differences))
    return f"{differences.mean():+.3f} [{differences.mean() - half:+.3f}, {differences.mean() + half:+.3f}]"


def finish(runs: list[dict], report: str, started: float, what: str, output: Path | None) -> dict:
    """Print an experiment's report and how long its ``what`` (e.g. "108 runs") took; write every run's numbers
    to ``output`` as JSON when given. Returns ``{"runs", "report", "minutes"}``."""
    import json

    import torch

    minutes = (time.perf_counter() - started) / 60
    print(report)
    print(f"\n{what} in {minutes:.1f} min ({torch.get_num_threads()} threads)")
    result = {"runs": runs, "report": report, "minutes": minutes}
    if output:
        output.write_text(json.dumps(result, indent=2))
    return result
