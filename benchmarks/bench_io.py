"""Cube reading and L1 normalisation against the plain baselines, on a Tivita-size cube (480 x 640 x 100).

Run: ``python benchmarks/bench_io.py`` (``--repeats 9``, ``--folder DIR`` for the scratch files).

- Tivita: ``read_cube`` against ``np.fromfile`` + the DATA.md reorder to (H, W, B) float32.
- ENVI (BIL, BIP, BSQ, written by Spectral Python): ``read_cube`` against ``spectral.open_image(hdr).load()``.
- L1 normalisation: ``hsiseg.spectral.normalize(cube, "l1")`` against ``cube / np.abs(cube).sum(-1, keepdims=True)``;
  peak extra memory of each in a fresh process, in cubes (1.00 = one more cube of memory).

Times are medians of pairwise ratios, candidate and baseline alternating in one process. Files are read
from the page cache after the warm-up, so the comparison is of the decoding work, not of the disk.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import spectral
from spectral.io import envi

from hsiseg.io import Cube, read_cube, write_cube
from hsiseg.spectral import normalize

sys.path.insert(0, str(Path(__file__).parent))
from common import measure_peak_rise, paired_ratio, peak_in_child  # noqa: E402

HEIGHT, WIDTH, BANDS = 480, 640, 100


def tivita_baseline(path: Path) -> np.ndarray:
    """The reference reading: fromfile, reshape to the header shape, flip axis 1, swap axes 0 and 1."""
    raw = np.fromfile(path, dtype=">f4", offset=12).reshape(WIDTH, HEIGHT, BANDS)
    return np.ascontiguousarray(np.flip(raw, axis=1).swapaxes(0, 1), dtype=np.float32)


def naive_l1(data: np.ndarray) -> np.ndarray:
    return data / np.abs(data).sum(axis=-1, keepdims=True)


def test_cube() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((HEIGHT, WIDTH, BANDS), dtype=np.float32) + 0.01


def child(which: str) -> None:
    """In a fresh process: peak RSS rise (bytes) of one L1 normalisation."""
    data = test_cube()
    function = partial(normalize, data, "l1") if which == "hsiseg" else partial(naive_l1, data)
    print(measure_peak_rise(function))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--child", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0])
        return

    data = test_cube()
    cube_mib = data.nbytes / 2**20
    print(f"cube {HEIGHT} x {WIDTH} x {BANDS} float32 ({cube_mib:.0f} MiB), spectral {spectral.__version__}")
    print("| operation | hsiseg ms | baseline ms | ratio (median) | target |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        cube = Cube(data, np.linspace(500, 1000, BANDS))
        tivita = write_cube(Path(folder) / "bench_SpecCube.dat", cube)
        assert np.array_equal(read_cube(tivita).data, tivita_baseline(tivita))
        ratio, ours, base = paired_ratio(partial(read_cube, tivita), partial(tivita_baseline, tivita), args.repeats)
        print(f"| Tivita read_cube vs fromfile + reorder | {ours:.0f} | {base:.0f} | {ratio:.2f}x | <= 1.2x |")
        for interleave in ("bil", "bip", "bsq"):
            header = Path(folder) / f"bench_{interleave}.hdr"
            envi.save_image(
                str(header), data, interleave=interleave, metadata={"wavelength": list(map(str, cube.wavelengths))}
            )
            baseline = partial(lambda h: spectral.open_image(str(h)).load(), header)
            ratio, ours, base = paired_ratio(partial(read_cube, header), baseline, args.repeats)
            name = f"ENVI {interleave.upper()} read_cube vs spectral load()"
            print(f"| {name} | {ours:.0f} | {base:.0f} | {ratio:.2f}x | <= 1.0x |")
    ratio, ours, base = paired_ratio(partial(normalize, data, "l1"), partial(naive_l1, data), args.repeats)
    print(f"| L1 normalisation vs naive numpy | {ours:.0f} | {base:.0f} | {ratio:.2f}x | <= 1.0x |")
    ours_peak = peak_in_child(__file__, "hsiseg") / data.nbytes
    naive_peak = peak_in_child(__file__, "naive") / data.nbytes
    print(
        f"\npeak extra memory of L1 normalisation, in cubes (the output itself is 1.00): hsiseg {ours_peak:.2f}, ",
        end="",
    )
    print(f"naive {naive_peak:.2f}")


if __name__ == "__main__":
    main()
