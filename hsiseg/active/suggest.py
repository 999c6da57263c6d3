"""Where to scribble next: stroke-sized regions of an image ranked by what a stroke there would teach the model.

Candidate regions are superpixels (SLIC on the first principal components of the network input, about
:data:`REGION_PIXELS` pixels each, so one stroke fits one region). Each region is scored from the model's
:class:`~hsiseg.predict.inference.Prediction` over its pixels that are neither scribbled nor invalid:

- ``low margin``: mean of 1 - (p1 - p2), the gap between the two most probable leaves;
- ``unknown``: how unlike every trained class the region is (the rank of its unknown-tissue score, lower
  scores rank higher) and its share of pixels flagged unknown;
- ``few strokes``: its predicted class has few strokes so far (1 / (1 + strokes)).

The default strategy (``mix``) ranks regions by a weighted mean of the three criteria's ranks
(:data:`MIX_WEIGHTS`) and picks greedily, halving the score of a region whose predicted class was already
suggested, so the list covers several classes. ``uncertainty`` ranks by margin alone; ``random`` and ``grid``
(regions in raster order of their centres, evenly spaced) are the baselines of
``benchmarks/annotation_budget.py``. ``stratified`` combines coverage and doubt: the lowest-margin region of
the band of the image with the fewest scribbled pixels (see :func:`_stratified`).

Tree-aware: when the region's two most probable leaves are siblings, the suggestion says so and accepts their
parent as the label (a partial label hsiseg trains on). A region never contains scribbled, invalid or declined
pixels (``declined``: suggestions the annotator turned down as holding no class of the tree); regions mostly
scribbled or declined already (over half their pixels) are not suggested. Same inputs, same seed: same list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hsiseg.dataset.strokes import stroke_counts
from hsiseg.errors import HsisegError
from hsiseg.labels import UNLABELLED
from hsiseg.predict.inference import Prediction
from hsiseg.tree import LabelTree

REGION_PIXELS = 150  # mean superpixel size: about one short stroke
MIX_WEIGHTS = {"low margin": 0.5, "unknown": 0.3, "few strokes": 0.2}
STRATEGIES = ("mix", "uncertainty", "random", "grid", "stratified")
MAX_SCRIBBLED_SHARE = 0.5
LOW_MARGIN = 0.5  # 1 - (p1 - p2) from which a region's reasons say "low margin"


def check_seed(seed: int) -> None:
    if seed < 0:
        raise HsisegError(f"suggestions: seed must be >= 0, got {seed}")


@dataclass
class Suggestion:
    """One region to scribble: its (H, W) bool ``mask`` (no scribbled or invalid pixel), its rank (1 = best),
    score, centre (x, y), the reasons, the model's two most probable leaves there and the labels a stroke may
    carry (the leaf, or the parent of two sibling candidates)."""

    rank: int
    mask: np.ndarray
    score: float
    centre: tuple[float, float]
    reasons: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    accept: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        """JSON-ready: everything but the mask, which is given as its outline polygons ([[x, y], ...])."""
        return {"rank": self.rank, "score": round(self.score, 4), "centre": [round(v, 1) for v in self.centre],
                "pixels": int(self.mask.sum()), "reasons": self.reasons, "candidates": self.candidates,
                "accept": self.accept, "outline": outline(self.mask)}  # fmt: skip


def regions(image: np.ndarray, invalid: np.ndarray, seed: int = 0) -> np.ndarray:
    """(H, W) int32 superpixel labels (0..R-1) of a (B, H, W) network input; invalid pixels are -1."""
    from skimage.segmentation import slic

    bands, height, width = image.shape
    pixels = image.reshape(bands, -1).T.astype(np.float64)
    valid = ~invalid.ravel()
    components = _principal_components(pixels[valid], 8, seed)
    features = np.zeros((height * width, components.shape[1]))
    features[valid] = components
    segments = max(1, round(height * width / REGION_PIXELS))
    labels = slic(features.reshape(height, width, -1), n_segments=segments, compactness=0.1, channel_axis=-1,
                  start_label=0, mask=~invalid, enforce_connectivity=True)  # fmt: skip
    return np.where(invalid, -1, labels).astype(np.int32)


def _principal_components(pixels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """(P, k) scores of the first k principal components, scaled to unit variance overall."""
    if not len(pixels):
        return np.zeros((0, 1))
    centred = pixels - pixels.mean(0)
    rng = np.random.default_rng(seed)
    sample = centred[rng.choice(len(centred), size=min(len(centred), 20_000), replace=False)]
    _, _, vectors = np.linalg.svd(sample, full_matrices=False)
    scores = centred @ vectors[: min(count, vectors.shape[0])].T
    return scores / max(float(scores.std()), 1e-12)


def suggest(prediction: Prediction, scribbles: np.ndarray, tree: LabelTree, count: int = 10,
            strategy: str = "mix", seed: int = 0, image: np.ndarray | None = None,
            superpixels: np.ndarray | None = None, declined: np.ndarray | None = None) -> list[Suggestion]:  # fmt: skip
    """The ``count`` best regions to scribble next (see module docstring). ``scribbles``: (H, W) target codes
    drawn so far; ``image``: the (B, H, W) network input the superpixels are computed from (or ``superpixels``
    given directly, from :func:`regions`); ``declined``: (H, W) bool, pixels of suggestions the annotator
    declined (no class of the tree there, e.g. background in background-free training): they are treated as
    taken, so a declined region is not suggested again."""
    if strategy not in STRATEGIES:
        raise HsisegError(f"suggestions: strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    check_seed(seed)
    if superpixels is None:
        if image is None:
            raise HsisegError("suggestions: give the image or its superpixels")
        superpixels = regions(image, prediction.invalid, seed)
    free = (scribbles == UNLABELLED) & ~prediction.invalid
    if declined is not None:
        free &= ~declined
    table = _region_table(prediction, scribbles, superpixels, tree, free)
    if not table.ids.size:
        return []
    if strategy == "stratified":
        order = _stratified(table, superpixels, scribbles, count)
    else:
        order = _order(table, strategy, count, seed)
    return [_suggestion(rank + 1, region, score, table, superpixels, free, prediction, tree)
            for rank, (region, score) in enumerate(order)]  # fmt: skip


@dataclass
class _RegionTable:
    """Per candidate region (index k): its id, centre, criteria and predicted leaf."""

    ids: np.ndarray
    centres: np.ndarray  # (R, 2) x, y
    margin: np.ndarray
    unknown: np.ndarray
    rare: np.ndarray
    predicted: np.ndarray


def _region_table(prediction: Prediction, scribbles: np.ndarray, superpixels: np.ndarray,
                  tree: LabelTree, free: np.ndarray) -> _RegionTable:  # fmt: skip
    """Each region's criteria over its ``free`` pixels ((H, W) bool: not scribbled, invalid or declined)."""
    top2 = np.sort(prediction.probabilities, axis=0)[-2:]
    margin: np.ndarray = 1.0 - (top2[1] - top2[0])
    score_rank = _percentile_rank(prediction.score, ~prediction.invalid)  # 0 = most unlike the trained classes
    strokes = _strokes_per_leaf(scribbles, tree)
    grid = np.indices(superpixels.shape)
    rows, columns = grid[0], grid[1]
    kept: dict[str, list[float]] = {k: [] for k in ("id", "x", "y", "margin", "unknown", "rare", "predicted")}
    for region in np.unique(superpixels[superpixels >= 0]):
        inside = superpixels == region
        open_pixels = inside & free
        if open_pixels.sum() < max(1, (1 - MAX_SCRIBBLED_SHARE) * inside.sum()):
            continue
        leaf = int(np.bincount(prediction.labels[open_pixels], minlength=tree.num_leaves).argmax())
        values = (region, columns[open_pixels].mean(), rows[open_pixels].mean(), margin[open_pixels].mean(),
                  0.5 * (1 - score_rank[open_pixels].mean()) + 0.5 * prediction.unknown[open_pixels].mean(),
                  1.0 / (1.0 + strokes[leaf]), leaf)  # fmt: skip
        for key, value in zip(kept, values, strict=True):
            kept[key].append(float(value))
    as_array = {key: np.asarray(value) for key, value in kept.items()}
    return _RegionTable(as_array["id"].astype(int), np.stack([as_array["x"], as_array["y"]], 1) if kept["id"]
                        else np.zeros((0, 2)), as_array["margin"], as_array["unknown"], as_array["rare"],
                        as_array["predicted"].astype(int))  # fmt: skip


def _percentile_rank(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """(H, W) rank of each value among ``values[where]``, in [0, 1]; 0 elsewhere."""
    ranks = np.zeros(values.shape, dtype=np.float64)
    chosen = values[where]
    if chosen.size:
        ranks[where] = np.argsort(np.argsort(chosen, kind="stable"), kind="stable") / max(1, chosen.size - 1)
    return ranks


def _strokes_per_leaf(scribbles: np.ndarray, tree: LabelTree) -> np.ndarray:
    """(C,) strokes (8-connected components) naming each leaf, or an ancestor of it (half a stroke each)."""
    from scipy import ndimage

    counts = np.zeros(tree.num_leaves)
    members = tree.ancestor_matrix()  # (N, C): node n covers leaf c
    for code in np.unique(scribbles[scribbles != UNLABELLED]):
        strokes = ndimage.label(scribbles == code, structure=np.ones((3, 3)))[1]
        counts += strokes * members[int(code)] * (1.0 if code < tree.num_leaves else 0.5)
    return counts


def _order(table: _RegionTable, strategy: str, count: int, seed: int) -> list[tuple[int, float]]:
    """(index into ``table``, score) of the chosen regions, best first; the score is the strategy's (the mixed
    rank score, or the margin criterion for the other strategies)."""
    count = min(count, table.ids.size)
    if strategy == "random":
        picked = np.random.default_rng(seed).permutation(table.ids.size)[:count]
    elif strategy == "grid":
        step = table.ids.size / count
        raster = np.lexsort((table.centres[:, 0], table.centres[:, 1]))  # rows, then columns
        offset = np.random.default_rng(seed).uniform(0, step)
        picked = np.array([raster[int(offset + k * step) % table.ids.size] for k in range(count)])
    elif strategy == "uncertainty":
        picked = np.argsort(-table.margin, kind="stable")[:count]
    else:
        return _mixed(table, count)
    return [(int(k), float(table.margin[k])) for k in picked]


def _mixed(table: _RegionTable, count: int) -> list[tuple[int, float]]:
    """The default strategy: weighted criteria ranks, picked greedily with a penalty on repeated classes."""
    criteria = {"low margin": table.margin, "unknown": table.unknown, "few strokes": table.rare}
    scores = np.sum([MIX_WEIGHTS[name] * _ranks(values) for name, values in criteria.items()], axis=0)
    chosen: list[tuple[int, float]] = []
    for _ in range(count):
        taken = [k for k, _ in chosen]
        penalty = np.array([0.5 ** sum(table.predicted[k] == p for k in taken) for p in table.predicted])
        adjusted = np.where(np.isin(np.arange(scores.size), taken), -np.inf, scores * penalty)
        best = int(np.argmax(adjusted))
        chosen.append((best, float(adjusted[best])))
    return chosen


def _stratified(table: _RegionTable, superpixels: np.ndarray, scribbles: np.ndarray,
                count: int) -> list[tuple[int, float]]:  # fmt: skip
    """Coverage first, doubt within: every region is put in one of ``strokes + count`` strata (consecutive
    regions in raster order of their centres, so each stratum is a band of the image); each pick is the
    lowest-margin region of the first stratum, in raster order, among those with the fewest scribbled pixels,
    and then counts as a stroke there. Stateless: the strata follow from the scribbles, so each round of an
    annotation session can call it anew."""
    position = _raster_position(superpixels)  # (R_all,) in [0, 1)
    drawn = scribbles != UNLABELLED
    strokes = sum(stroke_counts(scribbles).values())  # each class's 8-connected components
    strata = max(1, min(position.size, strokes + count))
    stratum = np.minimum((position * strata).astype(int), strata - 1)  # (R_all,)
    inside = superpixels >= 0
    per_region = np.bincount(superpixels[inside & drawn], minlength=position.size)
    cover = np.bincount(stratum, weights=per_region, minlength=strata).astype(np.float64)
    stroke_pixels = max(1.0, float(drawn.sum()) / max(1, strokes))
    candidate = stratum[table.ids]
    open_ = np.ones(table.ids.size, dtype=bool)
    chosen: list[tuple[int, float]] = []
    for _ in range(min(count, table.ids.size)):
        least = cover[candidate[open_]].min()
        first = candidate[open_ & (cover[candidate] == least)].min()
        best = int(np.argmax(np.where(open_ & (candidate == first), table.margin, -np.inf)))
        chosen.append((best, float(table.margin[best])))
        open_[best] = False
        cover[candidate[best]] += stroke_pixels
    return chosen


def _raster_position(superpixels: np.ndarray) -> np.ndarray:
    """(R,) each region's place in raster order of the centres (rows, then columns), as a share in [0, 1);
    R = the largest region id + 1 (ids absent from the image sort last)."""
    inside = superpixels >= 0
    ids = superpixels[inside]
    rows, columns = np.nonzero(inside)
    size = np.bincount(ids, minlength=int(ids.max(initial=-1)) + 1).astype(np.float64)
    present = size > 0
    centre_y = np.bincount(ids, weights=rows, minlength=size.size) / np.maximum(size, 1)
    centre_x = np.bincount(ids, weights=columns, minlength=size.size) / np.maximum(size, 1)
    order = np.lexsort((centre_x, centre_y, ~present))
    position = np.empty(size.size)
    position[order] = np.arange(size.size) / max(1, int(present.sum()))
    return position


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks of ``values`` in [0, 1] (1 = largest)."""
    if values.size < 2:
        return np.ones_like(values, dtype=np.float64)
    return np.argsort(np.argsort(values, kind="stable"), kind="stable") / (values.size - 1)


def _suggestion(rank: int, index: int, score: float, table: _RegionTable, superpixels: np.ndarray,
                free: np.ndarray, prediction: Prediction, tree: LabelTree) -> Suggestion:  # fmt: skip
    mask = (superpixels == table.ids[index]) & free
    mean = prediction.probabilities[:, mask].mean(1)
    first, second = (int(c) for c in np.argsort(mean)[::-1][:2])
    names = [tree.leaves[first], tree.leaves[second]]
    reasons = _reasons(table, index)
    accept = [names[0]]
    parent = tree.node(first).parent
    if parent is not None and parent == tree.node(second).parent and mean[second] > 0.2 * mean[first]:
        parent_name = tree.node(parent).name
        reasons.append(f"{names[0]} or {names[1]}? label it '{parent_name}' if unsure")
        accept.append(parent_name)
    return Suggestion(rank, mask, score, (float(table.centres[index, 0]), float(table.centres[index, 1])), reasons,
                      names, accept)  # fmt: skip


def _reasons(table: _RegionTable, index: int) -> list[str]:
    reasons = []
    if table.margin[index] >= LOW_MARGIN:
        reasons.append(f"low margin between the two most likely classes (p1 - p2 = {1 - table.margin[index]:.2f})")
    if table.unknown[index] >= np.quantile(table.unknown, 0.75):
        reasons.append("unlike the scribbled classes (high unknown-tissue score)")
    if table.rare[index] >= 0.5:
        reasons.append("its predicted class has few strokes")
    return reasons or ["covers a part of the image the strokes have not reached"]


def outline(mask: np.ndarray) -> list[list[list[float]]]:
    """The outlines of a (H, W) bool mask as polygons of [x, y] points (pixel centres), longest first."""
    from skimage.measure import find_contours

    padded = np.pad(mask, 1)
    contours = sorted(find_contours(padded.astype(float), 0.5), key=len, reverse=True)
    return [[[round(float(x) - 1, 1), round(float(y) - 1, 1)] for y, x in contour[::2]] for contour in contours[:3]]
