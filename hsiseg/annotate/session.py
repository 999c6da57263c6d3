"""An annotation session: a data spec, one annotator, the images opened so far and their layers.

Everything the annotation page asks for goes through :class:`AnnotationSession` (the web server only
translates requests): the sample list, an image (RGB as ``hsiseg predict`` renders it, or one band), the
spectrum under the cursor, the mean spectrum of each class drawn so far, the layers (strokes as target codes),
edits with undo / redo and autosave (:mod:`hsiseg.annotate.layers`), and the live model's maps
(:mod:`hsiseg.annotate.worker`). Opened images are kept in memory (raw cube, network input, RGB).
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from hsiseg.annotate.layers import Layer, StrokeEdit, check_annotator, merged_codes, own_file, read_layer, save_layer
from hsiseg.annotate.live_model import LiveSample
from hsiseg.annotate.spec_file import add_to_spec, next_value, value_table, values_of_codes
from hsiseg.dataset.spec import DataSpec
from hsiseg.errors import HsisegError
from hsiseg.io import Cube
from hsiseg.labels import UNLABELLED
from hsiseg.predict.inference import Prepared, prepare_cube
from hsiseg.render import rgb
from hsiseg.render.colour import stretch
from hsiseg.spectral import Preprocessing
from hsiseg.training.data import network_preprocessing


@dataclass
class SampleView:
    """An opened sample: its cube (H, W, B), (H, W, 3) uint8 RGB, layers (own layer first) and, on first use,
    its network input (:attr:`prepared`: opening an image shows it without preprocessing it)."""

    sample_id: str
    cube: Cube
    rgb: np.ndarray
    layers: list[Layer]
    preprocessing: Preprocessing
    superpixels: np.ndarray | None = None  # (H, W) candidate regions of suggestions, computed on first use
    declined: np.ndarray | None = None  # (H, W) bool: suggestions turned down ("no class here"), this session only
    offered: list[np.ndarray] = field(default_factory=list)  # the masks of the suggestions shown last, by rank

    @cached_property
    def prepared(self) -> Prepared:
        return prepare_cube(self.cube, self.preprocessing)

    @property
    def own(self) -> Layer:
        return self.layers[0]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


class AnnotationSession:
    """One annotator's session on a data spec (see module docstring). Thread-safe."""

    def __init__(self, spec_path: str | Path, annotator: str) -> None:
        self.spec_path = Path(spec_path)
        self.annotator = check_annotator(annotator)
        self.spec = DataSpec.from_file(self.spec_path)
        self.table = value_table(self.spec)
        self.ignore = self.spec.document.annotations.ignore_value
        self.preprocessing = network_preprocessing(self.spec, 0)
        self.views: dict[str, SampleView] = {}
        self.lock = threading.RLock()
        self.changes = 0  # grows with every edit anywhere: the live model's staleness counter

    @property
    def tree(self):
        return self.spec.tree

    def sample_ids(self) -> list[str]:
        return list(self.spec.samples)

    def view(self, sample_id: str) -> SampleView:
        """The sample, opened on first use (cube read, preprocessed, rendered; its layers read)."""
        with self.lock:
            if sample_id not in self.views:
                self.views[sample_id] = self._open(sample_id)
            return self.views[sample_id]

    def _open(self, sample_id: str) -> SampleView:
        if sample_id not in self.spec.samples:
            raise HsisegError(f"{self.spec_path}: no sample {sample_id!r}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a reader's warnings are the CLI's business, not the page's
            cube = self.spec.read_cube(sample_id)
            image = rgb(cube.data, cube.wavelengths)
        shape = (int(cube.data.shape[0]), int(cube.data.shape[1]))
        mine = own_file(sample_id, self.annotator)
        files = [f for f in self.spec.samples[sample_id].annotations if f != mine]
        layers = [self._layer(mine, shape, editable=True)] + [self._layer(f, shape, editable=False) for f in files]
        return SampleView(sample_id, cube, image, layers, self.preprocessing)

    def _layer(self, file: str, shape: tuple[int, int], editable: bool) -> Layer:
        return read_layer(file, self.spec.resolve(file), self.tree, self.table, self.ignore, shape, editable)

    # --- what the page shows -------------------------------------------------------------------------------

    def image_png(self, sample_id: str, band: int | None = None) -> bytes:
        """PNG of the sample: its RGB rendering, or band ``band`` stretched between its 1st and 99th percentile."""
        view = self.view(sample_id)
        if band is None:
            return _png(view.rgb)
        bands = view.cube.data.shape[-1]
        if not 0 <= band < bands:
            raise HsisegError(f"band must be in 0..{bands - 1}, got {band}")
        return _png((stretch(view.cube.data[..., band]) * 255).astype(np.uint8))

    def spectrum(self, sample_id: str, x: int, y: int) -> dict[str, object]:
        """The cube's spectrum at column ``x``, row ``y`` with the wavelengths (nm)."""
        view = self.view(sample_id)
        height, width = view.shape
        if not (0 <= x < width and 0 <= y < height):
            raise HsisegError(f"pixel ({x}, {y}) is outside the {width} x {height} image")
        values = view.cube.data[y, x]
        return {"x": x, "y": y, "wavelengths": view.cube.wavelengths.tolist(),
                "values": np.where(np.isfinite(values), values, 0).tolist()}  # fmt: skip

    def class_spectra(self) -> dict[str, list[float]]:
        """Mean spectrum of every node drawn so far in the opened samples (same wavelengths as the cubes)."""
        sums: dict[int, np.ndarray] = {}
        counts: dict[int, int] = {}
        with self.lock:
            for view in self.views.values():
                codes = merged_codes(view.layers)
                for code in np.unique(codes[codes != UNLABELLED]):
                    pixels = view.cube.data[codes == code]
                    sums[int(code)] = sums.get(int(code), 0) + np.nan_to_num(pixels).sum(0)
                    counts[int(code)] = counts.get(int(code), 0) + len(pixels)
        return {self.tree.node(c).name: (sums[c] / counts[c]).tolist() for c in sorted(sums)}

    def layer_codes(self, sample_id: str, layer: int | None = None) -> bytes:
        """Strokes as (H, W) little-endian int16 codes (-100 unlabelled): of layer ``layer`` (0 is the own
        layer, then the others in the spec's order), or of every layer merged (None)."""
        with self.lock:
            layers = self.view(sample_id).layers
            if layer is None:
                return merged_codes(layers).astype("<i2").tobytes()
            if not 0 <= layer < len(layers):
                raise HsisegError(f"layer must be in 0..{len(layers) - 1}, got {layer}")
            return layers[layer].codes.astype("<i2").tobytes()

    def merged(self, sample_id: str) -> np.ndarray:
        """(H, W) int32 codes of every layer merged (a copy)."""
        with self.lock:
            return merged_codes(self.view(sample_id).layers).copy()

    def layer_state(self, sample_id: str) -> dict[str, object]:
        """Size, own layer's version and file, the other layers' annotators, undo / redo availability."""
        with self.lock:
            view = self.view(sample_id)
            own = view.own
            return {"sample": sample_id, "height": view.shape[0], "width": view.shape[1],
                    "bands": int(view.cube.data.shape[-1]), "version": own.version, "file": own.file,
                    "others": [layer.annotator for layer in view.layers[1:]],
                    "can_undo": bool(own.undo_stack), "can_redo": bool(own.redo_stack)}  # fmt: skip

    # --- edits ----------------------------------------------------------------------------------------------

    def edit(self, sample_id: str, edit: StrokeEdit, version: int) -> dict[str, object]:
        """Draw ``edit`` on the own layer (drawn on ``version``) and save it; the new layer state."""
        with self.lock:
            layer = self.view(sample_id).own
            layer.apply(edit, self.tree, version)
            self._save(sample_id, layer)
            return self.layer_state(sample_id)

    def undo(self, sample_id: str, version: int, redo: bool = False) -> dict[str, object]:
        """Undo (or redo) the own layer's last change and save it; the new layer state."""
        with self.lock:
            layer = self.view(sample_id).own
            if layer.redo(version) if redo else layer.undo(version):
                self._save(sample_id, layer)
            return self.layer_state(sample_id)

    def _save(self, sample_id: str, layer: Layer) -> None:
        """Write the layer; list it in the spec and give new nodes a value first, where needed."""
        values = values_of_codes(self.spec, self.table)
        new: dict[int, str] = {}
        for code in np.unique(layer.codes[layer.codes != UNLABELLED]):
            if int(code) not in values:
                value = next_value({**self.table, **new}, self.ignore)
                new[value], values[int(code)] = self.tree.node(int(code)).name, value
        listed = layer.file in self.spec.samples[sample_id].annotations
        if new or not listed:
            add_to_spec(self.spec_path, sample_id, None if listed else layer.file, new)
            self.spec = DataSpec.from_file(self.spec_path)
            self.table = value_table(self.spec)
        save_layer(layer, values, self.ignore)
        self.changes += 1

    # --- the live model's view --------------------------------------------------------------------------------

    def live_samples(self) -> list[LiveSample]:
        """Every opened sample with strokes, its strokes merged over the layers (a snapshot)."""
        with self.lock:
            samples = []
            for view in self.views.values():
                codes = merged_codes(view.layers)
                if (codes != UNLABELLED).any():
                    samples.append(LiveSample(view.sample_id, view.prepared, codes.copy()))
            return samples


def _png(image: np.ndarray) -> bytes:
    import imageio.v3 as imageio

    buffer = io.BytesIO()
    imageio.imwrite(buffer, image, extension=".png")
    return buffer.getvalue()
