"""``benchmarks/gpu_check.py --device cpu --quick`` runs every section at toy sizes, so the script a lent GPU
runs has been executed end to end before it gets there."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_section_on_cpu(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), str(tmp_path), "--device", "cpu", "--quick"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(results) == ["environment", "cuda_tests", "training", "losses", "prediction", "streaming"]
    assert results["environment"]["device"] == "cpu" and results["environment"]["quick"] is True
    assert results["cuda_tests"]["exit_code"] in (0, 5) and results["cuda_tests"].get("failed", 0) == 0
    training = results["training"]
    assert {(row["model"], row["precision"], row["channels_last"]) for row in training} == {
        (model, precision, last) for model in ("spectral-spatial", "unet") for precision in ("fp32", "bf16")
        for last in (False, True)
    }  # fmt: skip
    for row in training:
        assert "error" not in row, row
        assert row["losses_finite"] and row["steps_per_s"] > 0 and 0 <= row["data_wait_share"] <= 1
    ratios = {row["loss"]: row["ratio_to_ce"] for row in results["losses"] if row["ratio_to_ce"] is not None}
    assert ratios["ce"] == 1.0 and {"tree-ce", "tree-wasserstein", "tree-gwdl"} <= set(ratios)
    for section in ("prediction", "streaming"):
        assert "error" not in results[section], results[section]
        assert math.isfinite(results[section]["frames_per_s"]) and results[section]["frames_per_s"] > 0
    assert results["prediction"]["done"] == results["prediction"]["frames"]
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "## losses" in markdown and "| spectral-spatial | bf16 |" in markdown
