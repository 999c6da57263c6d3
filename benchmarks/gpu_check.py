"""The GPU path in one command: every figure the GPU issue asks for, written to OUT as JSON and Markdown.

Run: ``python benchmarks/gpu_check.py OUT [--device cuda|cpu] [--quick]``. On a machine with an accelerator
``benchmarks/device_run.sh`` runs it as its single command. ``--device cpu --quick`` runs every section at toy
sizes (a test runs it), so nothing in this script is first executed on a lent device.

Sections (each runs even when an earlier one failed; a failure is recorded with its one-line error):

1. ``environment``: device name, torch and CUDA versions.
2. ``cuda_tests``: ``pytest -m cuda`` (``tests/test_cuda.py``): passed / failed / skipped.
3. ``training``: the default network and the U-Net for a fixed number of steps on synthetic Tivita-size data
   (480 x 640 x 100; crops for the U-Net, annotated pixels for the default network), in fp32 and bf16 autocast,
   with and without channels-last and ``torch.compile``: steps/s, pixels/s, peak device memory, and the share
   of step time spent waiting for data.
4. ``losses``: forward+backward of ``ce``, ``tree-ce``, ``tree-wasserstein``, ``tree-gwdl`` and MONAI's GWDL (when
   installed) at C = 16, 107 and 256, as ratios to ``ce`` in this process (synchronised timing and warm-up).
   On a GPU also the first four under ``torch.compile`` at C = 107.
5. ``prediction``: a folder of Tivita-size cubes end to end (read, preprocess, network, OOD, write): frames/s
   and wall / pure network time.
6. ``streaming``: a snapshot-mosaic recording (409 x 217 x 25 frames) with ``batch_frames=8``: frames/s
   against the camera's 25 frames/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
ROOT = Path(__file__).resolve().parents[1]

SIZES = {  # full (one H100-class GPU, <= 8 minutes) and quick (CPU, CI-size time)
    False: {"steps": 30, "crop": 128, "batch": 8, "pixels": 262144, "image": (480, 640), "bands": 100,
            "classes": (16, 107, 256), "loss_size": 128, "loss_batch": 4, "cubes": 10, "frames": 64,
            "sensor": (1085, 2045), "repeats": 10},
    True: {"steps": 3, "crop": 32, "batch": 2, "pixels": 256, "image": (48, 64), "bands": 100,
           "classes": (16,), "loss_size": 32, "loss_batch": 2, "cubes": 2, "frames": 4,
           "sensor": (120, 160), "repeats": 2},
}  # fmt: skip


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``function`` after two warm-up calls, synchronised on a GPU."""
    for _ in range(2):
        function()
    times = []
    for _ in range(repeats):
        synchronise(device)
        start = time.perf_counter()
        function()
        synchronise(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def environment(device: torch.device, sizes: dict) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    return {"device": str(device), "name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "threads": torch.get_num_threads(), "quick": sizes["steps"] == SIZES[True]["steps"]}  # fmt: skip


def cuda_tests(device: torch.device, sizes: dict) -> dict[str, Any]:
    """``pytest -m cuda``, given at most ``sizes['tests_s']`` seconds; its output goes to OUT/cuda_tests.log."""
    command = [sys.executable, "-m", "pytest", "-q", "-rf", "-m", "cuda", str(ROOT / "tests" / "test_cuda.py"), "-p",
               "no:cacheprovider"]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=sizes["tests_s"])
        output, exit_code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as timeout:
        output, exit_code = _text(timeout.stdout) + f"\ntimed out after {sizes['tests_s']:.0f} s", -1
    sizes["output"].joinpath("cuda_tests.log").write_text(output)
    counts = {kind: int(number) for number, kind in re.findall(r"(\d+) (passed|failed|skipped|error)", output)}
    failures = [line[:300] for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"exit_code": exit_code, **counts, "summary": output.strip().splitlines()[-1:], "failures": failures}


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def training(device: torch.device, sizes: dict) -> list[dict[str, Any]]:
    from hsiseg.models import DEFAULT_MODEL, build_model

    rows = []
    compiles = (False, True) if device.type == "cuda" else (False,)  # CPU: refused (TrainConfig.check)
    for model_name in (DEFAULT_MODEL, "unet"):
        for precision in ("fp32", "bf16"):
            for channels_last in (False, True):
                for compiled in compiles[: 1 if channels_last else 2]:  # compile: once per model and precision
                    row = {"model": model_name, "precision": precision, "channels_last": channels_last,
                           "compile": compiled}  # fmt: skip
                    if time.monotonic() > sizes["deadline"]:
                        rows.append({**row, "error": "skipped: out of time (--budget)"})
                        continue
                    try:
                        network = build_model(model_name, sizes["bands"], 14, **({"width": 32, "depth": 4}
                                                                                  if model_name == "unet" else {}))
                        row.update(_train_steps(network, device, sizes, precision, channels_last, compiled))
                    except Exception as error:  # noqa: BLE001 - one configuration failing must not stop the run
                        row["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                    rows.append(row)
    return rows


def _train_steps(network, device, sizes, precision: str, channels_last: bool, compiled: bool) -> dict[str, Any]:
    """Steps/s, pixels/s, peak memory and data-wait share of ``sizes['steps']`` AdamW steps with cross-entropy."""
    from hsiseg.models import network_of

    pixelwise = network_of(network).pixelwise_training
    network = network.to(device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    model = torch.compile(network) if compiled else network
    optimiser = torch.optim.AdamW(network.parameters(), lr=1e-3)
    dtype = torch.bfloat16 if precision == "bf16" else None
    generator = torch.Generator().manual_seed(0)
    shape = (1, sizes["bands"], sizes["pixels"], 1) if pixelwise else (sizes["batch"], sizes["bands"],
                                                                           sizes["crop"], sizes["crop"])  # fmt: skip
    pixels = shape[0] * shape[2] * shape[3]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # Batches ready in host memory (pinned on a GPU), as a loader that keeps up leaves them: the wait measured is
    # the step's own (the copy to the device), not this script's random-number generation.
    pool = [(torch.rand(shape, generator=generator), torch.randint(0, 14, (shape[0], shape[2], shape[3]),
                                                                   generator=generator)) for _ in range(4)]  # fmt: skip
    if device.type == "cuda":
        pool = [(images.pin_memory(), target.pin_memory()) for images, target in pool]
    waited, losses, started = 0.0, [], None
    for step in range(sizes["steps"] + 2):  # two warm-up steps (compilation, allocator)
        if step == 2:
            synchronise(device)
            started, waited = time.perf_counter(), 0.0
        before = time.perf_counter()
        images, target = pool[step % len(pool)]
        images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        waited += time.perf_counter() - before
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(images).float(), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.detach())
    synchronise(device)
    seconds = time.perf_counter() - (started or time.perf_counter())
    values = torch.stack(losses).float().cpu()
    return {
        "steps_per_s": sizes["steps"] / seconds, "pixels_per_s": sizes["steps"] * pixels / seconds,
        "peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "data_wait_share": waited / seconds, "losses_finite": bool(torch.isfinite(values).all()),
    }  # fmt: skip


def losses(device: torch.device, sizes: dict) -> list[dict[str, Any]]:
    from bench_losses import setup

    plain = ["ce", "tree-ce", "tree-wasserstein", "tree-gwdl", "monai-gwdl"]
    rows = []
    for classes in sizes["classes"]:
        # on a GPU, at the C = 107: also each loss under torch.compile (fewer, fused kernels)
        compiled = [f"{name} compiled" for name in plain[:4]] if device.type == "cuda" and classes == 107 else []
        names = plain + compiled
        times: dict[str, float | str] = {}
        for name in names:
            try:
                loss, logits, target = setup(name.removesuffix(" compiled"), classes, sizes["loss_size"],
                                             sizes["loss_batch"])  # fmt: skip
                if isinstance(loss, torch.nn.Module):  # the tree losses keep the tree's tables as buffers
                    loss = loss.to(device)
                if name.endswith(" compiled"):
                    loss = torch.compile(loss)
                logits = logits.detach().to(device).requires_grad_()
                target = target.to(device)
                times[name] = timed(lambda loss=loss, logits=logits, target=target: loss(logits, target).backward(),
                                    device, sizes["repeats"])  # fmt: skip
            except Exception as error:  # noqa: BLE001 - e.g. MONAI not installed
                times[name] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        base = times["ce"]
        for name in names:
            value = times[name]
            ratio = value / base if isinstance(value, float) and isinstance(base, float) else None
            rows.append({"classes": classes, "loss": name, "ms": value * 1e3 if isinstance(value, float) else None,
                         "ratio_to_ce": ratio, "error": value if isinstance(value, str) else None})  # fmt: skip
    return rows


def prediction(device: torch.device, sizes: dict) -> dict[str, Any]:
    from bench_predict import make_inputs

    from hsiseg.predict import PredictOptions, Predictor, predict_batch

    with tempfile.TemporaryDirectory() as folder:
        model, frames = make_inputs(Path(folder), sizes["cubes"], *sizes["image"], "default")
        options = PredictOptions(device=str(device), overwrite=True)
        predict_batch(model, frames[:1], Path(folder) / "warm", options)
        started = time.perf_counter()
        results = predict_batch(model, frames, Path(folder) / "out", options)
        wall = time.perf_counter() - started
        started = time.perf_counter()  # the same with one reading and one writing thread: what workers give
        alone = predict_batch(model, frames, Path(folder) / "one", replace(options, workers=1))
        wall_one_worker = time.perf_counter() - started
        predictor = Predictor.from_options(model, options)
        from hsiseg.io import read_cube

        prepared = [predictor.prepare(read_cube(path, **predictor.card.input_scaling.reader_options()))
                    for path in frames]  # fmt: skip
        network = sum(timed(lambda item=item: predictor.logits(item.image), device, 1) for item in prepared)
        in_memory = sum(timed(lambda item=item: predictor.predict(None, item), device, 1) for item in prepared)
        profile(lambda: predictor.predict(None, prepared[0]), device, sizes["output"] / "prediction_profile.txt")
    done = sum(result.status == "done" for result in results)
    return {"frames": len(frames), "done": done, "frames_per_s": done / wall, "wall_s": wall,
            "network_s": network, "in_memory_s": in_memory, "wall_over_network": wall / network,
            "wall_over_in_memory": wall / in_memory, "workers": options.pipeline_workers(),
            "frames_per_s_one_worker": sum(r.status == "done" for r in alone) / wall_one_worker}  # fmt: skip


def profile(function: Callable[[], object], device: torch.device, path: Path) -> None:
    """torch.profiler's table of one call of ``function`` (after a warm-up call): where a frame's time goes."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    function()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profiler(activities=activities) as trace:
        function()
        synchronise(device)
    averages = trace.key_averages()
    tables = [averages.table(sort_by="cpu_time_total", row_limit=25)]
    if device.type == "cuda":
        tables.append(averages.table(sort_by="self_cuda_time_total", row_limit=25))
    path.write_text("\n\n".join(tables))


def streaming(device: torch.device, sizes: dict) -> dict[str, Any]:
    from bench_stream import default_model, recording

    from hsiseg.predict import RunOptions
    from hsiseg.predict.stream import predict_recording

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model, video = default_model(root), recording(root, sizes["frames"], sizes["sensor"])
        options = RunOptions(device=str(device))
        result = predict_recording(model, video, root / "out", options, batch_frames=8)
        alone = predict_recording(model, video, root / "one", replace(options, workers=1), batch_frames=8)
    return {"frames": result.done, "frames_per_s": result.done / result.seconds, "camera_frames_per_s": 25,
            "network_s": result.network_seconds, "wall_s": result.seconds, "workers": options.pipeline_workers(),
            "frames_per_s_one_worker": alone.done / alone.seconds}  # fmt: skip


SECTIONS: dict[str, Callable[[torch.device, dict], Any]] = {
    "environment": environment, "cuda_tests": cuda_tests, "training": training, "losses": losses,
    "prediction": prediction, "streaming": streaming,
}  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    """The figures as Markdown tables (one per section)."""
    lines = [f"# gpu_check on {results['environment'].get('name')} ({results['environment'].get('device')})", ""]
    for section, value in results.items():
        lines += [f"## {section}", ""]
        rows = value if isinstance(value, list) else [value]
        keys = list(dict.fromkeys(key for row in rows if isinstance(row, dict) for key in row))
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for row in rows:
            lines.append("| " + " | ".join(_cell(row.get(key)) for key in keys) + " |")
        lines.append("")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="toy sizes (CPU, CI-size time)")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--budget", type=float, default=1800.0,
                        help="seconds for the whole run: the CUDA tests get a third, later work is skipped past it")
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    deadline = time.monotonic() + arguments.budget
    sizes = {**SIZES[arguments.quick], "deadline": deadline, "tests_s": arguments.budget / 3,
             "output": arguments.output}  # fmt: skip
    arguments.output.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name in ["environment", *(s for s in arguments.sections if s != "environment")]:
        started = time.perf_counter()
        if time.monotonic() > deadline:
            results[name] = {"error": "skipped: out of time (--budget)"}
            continue
        try:
            results[name] = SECTIONS[name](device, sizes)
        except Exception as error:  # noqa: BLE001 - record it, run the next section
            results[name] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
        print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)
        (arguments.output / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    report = markdown(results)
    (arguments.output / "gpu_check.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
