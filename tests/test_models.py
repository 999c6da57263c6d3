"""hsiseg.models: every network on odd sizes (forward, training step, tiled prediction), the Gaussian context
against a brute-force reference, and the input-size wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsiseg.io import Cube
from hsiseg.models import build_model, pixelwise_training, unwrap
from hsiseg.models.card import ModelCard, NetworkConfig
from hsiseg.models.spectral_spatial import gaussian_blur, guided_average
from hsiseg.predict.inference import Predictor
from hsiseg.spectral import Preprocessing
from hsiseg.tree import LabelTree

MODELS = [
    ("unet", {"width": 8, "depth": 3}),
    ("pixel", {"width": 8}),
    ("spectral-spatial", {"width": 8}),
    ("spectral-spatial", {"width": 8, "context": "gaussian", "sigma": 2.0}),
    ("spectral-spatial", {"width": 8, "context": "conv"}),
    ("spectral-spatial", {"width": 8, "context": "none"}),
]
IDS = [
    "unet",
    "pixel",
    "spectral-spatial",
    "spectral-spatial-gaussian",
    "spectral-spatial-conv",
    "spectral-spatial-none",
]


@pytest.mark.parametrize(("name", "options"), MODELS, ids=IDS)
@pytest.mark.parametrize("size", [(145, 145), (97, 131), (5, 7)])
def test_every_model_any_size_forward_and_training_step(name: str, options: dict, size: tuple[int, int]) -> None:
    model = build_model(name, 6, 4, **options)
    image = torch.randn(2, 6, *size)
    model.train()
    logits = model(image)
    assert logits.shape == (2, 4, *size)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        assert model(image).shape == (2, 4, *size)


@pytest.mark.parametrize(("name", "options"), MODELS, ids=IDS)
def test_every_model_tiled_prediction_on_odd_sizes(name: str, options: dict) -> None:
    tree = LabelTree.from_dict({"children": [{"name": "a", "children": ["a1", "a2"]}, "b", "c"]})
    model = build_model(name, 6, tree.num_leaves, **options)
    network = NetworkConfig(name=name, in_channels=6, classes=tree.num_leaves, options=options)
    card = ModelCard.create(tree, model=network, preprocessing=Preprocessing(), trained_classes=tree.leaves)
    cube = Cube(np.random.default_rng(0).random((97, 131, 6), dtype=np.float32), np.arange(6) * 10.0 + 500)
    tiled = Predictor(model, card, tile=48, overlap=0.25).predict(cube)
    whole = Predictor(model, card, tile=256).predict(cube)
    assert tiled.labels.shape == whole.labels.shape == (97, 131)
    if name == "pixel" or options.get("context") == "none":
        np.testing.assert_allclose(tiled.probabilities, whole.probabilities, atol=1e-5)
    else:  # spatial context: tiles differ near their borders (tests/test_predict.py bounds it for a U-Net)
        np.testing.assert_allclose(tiled.probabilities.sum(0), 1.0, atol=1e-5)


def brute_force_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Direct 2D Gaussian weighted average with reflected borders, pixel by pixel."""
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None] ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(x, ((0, 0), (0, 0), (radius, radius), (radius, radius)), mode="reflect")
    out = np.zeros_like(x)
    for i in range(x.shape[2]):
        for j in range(x.shape[3]):
            out[:, :, i, j] = (padded[:, :, i : i + 2 * radius + 1, j : j + 2 * radius + 1] * kernel).sum((-1, -2))
    return out


def test_gaussian_blur_equals_brute_force() -> None:
    x = torch.rand(1, 3, 17, 23, dtype=torch.float64)
    np.testing.assert_allclose(gaussian_blur(x, 1.5).numpy(), brute_force_blur(x.numpy(), 1.5), atol=1e-12)


def brute_force_guided(p: np.ndarray, g: np.ndarray, sigma: float, tau: float) -> np.ndarray:
    """The guided average of one image pixel by pixel: p (C, H, W), g (G, H, W)."""
    radius = int(np.ceil(3 * sigma))
    height, width = p.shape[1:]
    differences = np.sort(((g[:, :, 1:] - g[:, :, :-1]) ** 2).sum(0).ravel())
    scale = differences[(differences.size - 1) // 2] * tau**2  # the lower median, as torch.median
    pad = ((0, 0), (radius, radius), (radius, radius))
    padded_p, padded_g = np.pad(p, pad, mode="reflect"), np.pad(g, pad, mode="reflect")
    out = np.zeros_like(p)
    for i in range(height):
        for j in range(width):
            total, weights = np.zeros(p.shape[0]), 0.0
            for di in range(-radius, radius + 1):
                for dj in range(-radius, radius + 1):
                    gi, gj = i + di + radius, j + dj + radius
                    similarity = np.exp(-((padded_g[:, gi, gj] - g[:, i, j]) ** 2).sum() / (2 * scale))
                    weight = np.exp(-(di * di + dj * dj) / (2 * sigma**2)) * similarity
                    total += weight * padded_p[:, gi, gj]
                    weights += weight
            out[:, i, j] = total / weights
    return out


def test_guided_average_equals_brute_force_and_keeps_edges() -> None:
    rng = np.random.default_rng(0)
    guide = rng.normal(size=(2, 3, 9, 11))
    probabilities = torch.softmax(torch.from_numpy(rng.normal(size=(2, 4, 9, 11))), 1)
    result = guided_average(probabilities, torch.from_numpy(guide), 1.0, 2.0).numpy()
    for n in range(2):
        np.testing.assert_allclose(
            result[n], brute_force_guided(probabilities[n].numpy(), guide[n], 1.0, 2.0), atol=1e-10
        )
    # computed in bands of rows: the same numbers, bit for bit, whatever the band height
    for rows in (1, 2, 4, 5, 9, 100):
        banded = guided_average(probabilities, torch.from_numpy(guide), 1.0, 2.0, block_rows=rows).numpy()
        np.testing.assert_array_equal(banded, result)
    # two flat regions with a sharp boundary: the edge-aware average keeps it, a Gaussian blurs it
    labels = np.zeros((1, 16, 16), dtype=np.int64)
    labels[:, :, 8:] = 1
    onehot = torch.nn.functional.one_hot(torch.from_numpy(labels), 2).permute(0, 3, 1, 2).double()
    noisy_guide = 10 * onehot + 0.1 * torch.from_numpy(rng.normal(size=onehot.shape))
    kept = guided_average(onehot, noisy_guide, 2.0, 3.0)
    assert (kept.argmax(1) == torch.from_numpy(labels)).all() and kept[:, 1, :, 7].max() < 1e-3
    assert gaussian_blur(onehot, 2.0)[:, 1, :, 7].min() > 0.3


def test_smoothing_contexts_average_probabilities_and_keep_the_energy() -> None:
    torch.manual_seed(0)
    model = build_model("spectral-spatial", 6, 4, width=8, context="gaussian", sigma=1.0)
    image = torch.randn(1, 6, 20, 24)
    model.eval()
    with torch.no_grad():
        raw_eval = unwrap(model).spectral(image)
        smoothed = model(image)
    expected = gaussian_blur(torch.softmax(raw_eval, 1), 1.0)
    np.testing.assert_allclose(torch.softmax(smoothed, 1), expected, atol=1e-5)
    np.testing.assert_allclose(torch.logsumexp(smoothed, 1), torch.logsumexp(raw_eval, 1), atol=1e-4)
    assert pixelwise_training(model) and not pixelwise_training(build_model("unet", 6, 4))
    assert not pixelwise_training(build_model("spectral-spatial", 6, 4, context="conv"))


def test_pixel_network_standardises_its_input() -> None:
    model = build_model("pixel", 3, 2, width=4)
    spectra = torch.tensor([[1.0, 10.0, 100.0], [3.0, 30.0, 300.0]])
    unwrap(model).fit_input_statistics(spectra)
    np.testing.assert_allclose(unwrap(model).input_mean, [2.0, 20.0, 200.0])
    np.testing.assert_allclose(unwrap(model).input_std, spectra.std(0))
    assert "input_mean" in unwrap(model).state_dict()  # stored with the weights


def test_model_option_errors() -> None:
    from hsiseg import HsisegError

    with pytest.raises(HsisegError, match="context must be one of"):
        build_model("spectral-spatial", 6, 4, context="huge")
    with pytest.raises(HsisegError, match="sigma and tau must be > 0"):
        build_model("spectral-spatial", 6, 4, sigma=0)
