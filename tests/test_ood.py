"""hsiseg.ood: every score against its formula, calibration on held-out pixels only, transfer to a refit model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsiseg import HsisegError
from hsiseg.models import build_model, smooth_maps
from hsiseg.ood import DEFAULT_SCORE, DEFAULT_SCORES, OOD_SCORES, PixelOutputs, build_score
from hsiseg.ood.calibration import calibrate, fit_scores, reference_sample, transfer
from hsiseg.ood.maps import score_maps


def crafted(pixels: int = 60, classes: int = 4, dims: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (pixels, classes))
    features = rng.normal(0, 1, (pixels, dims)) + np.repeat(np.eye(classes, dims) * 4, pixels // classes, 0)
    labels = np.repeat(np.arange(classes), pixels // classes)
    return logits, features, labels


def outputs(logits=None, features=None, inputs=None, targets=None) -> PixelOutputs:
    def tensor(a):
        return None if a is None else torch.tensor(a, dtype=torch.int64 if a.dtype.kind == "i" else torch.float32)

    size = next(len(a) for a in (logits, features, inputs) if a is not None)
    logits = np.zeros((size, 2)) if logits is None else logits
    return PixelOutputs(tensor(logits), tensor(features), tensor(inputs), tensor(targets))


def test_logit_scores_match_their_formulas() -> None:
    logits, _, _ = crafted()
    pixels = outputs(logits)
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(build_score("max_softmax")(pixels).numpy(), softmax.max(1), rtol=1e-5)
    np.testing.assert_allclose(build_score("max_logit")(pixels).numpy(), logits.max(1), rtol=1e-6)
    for temperature in (1.0, 0.5, 4.0):
        expected = temperature * np.log(np.exp(logits / temperature).sum(1))
        score = build_score("energy", temperature=temperature)
        np.testing.assert_allclose(score(pixels).numpy(), expected, rtol=1e-5)
        assert score.options() == {"temperature": temperature} and not score.fitted


@pytest.mark.parametrize(("name", "space"), [("mahalanobis", "features"), ("spectral_mahalanobis", "inputs")])
def test_mahalanobis_matches_brute_force(name: str, space: str) -> None:
    _, values, labels = crafted()
    queries = np.random.default_rng(1).normal(0, 2, (25, values.shape[1]))
    score = build_score(name, shrinkage=0.1)
    score.fit(outputs(**{space: values, "targets": labels}))
    means = np.stack([values[labels == c].mean(0) for c in range(4)])
    centred = values - means[labels]
    covariance = centred.T @ centred / (len(values) - 4)
    covariance = 0.9 * covariance + 0.1 * np.trace(covariance) / 6 * np.eye(6)
    precision = np.linalg.inv(covariance)
    expected = [-min((q - m) @ precision @ (q - m) for m in means) for q in queries]
    np.testing.assert_allclose(score(outputs(**{space: queries})).numpy(), expected, rtol=1e-4)
    assert score.fitted and score.space == space


def test_knn_matches_brute_force_and_keeps_rare_classes() -> None:
    _, features, labels = crafted()
    queries = np.random.default_rng(2).normal(0, 2, (30, features.shape[1]))
    score = build_score("knn", k=3, bank_size=1000)  # the bank holds every training pixel
    score.fit(outputs(features=features, targets=labels))
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    distances = np.sort(np.linalg.norm(q[:, None] - unit[None], axis=2), axis=1)
    np.testing.assert_allclose(score(outputs(features=queries)).numpy(), -distances[:, 2], rtol=1e-4, atol=1e-6)
    rare = np.concatenate([np.zeros(200, np.int64), np.ones(3, np.int64)])  # a class of 3 pixels among 203
    small = build_score("knn", k=1, bank_size=20)
    spread = np.random.default_rng(3).normal(0, 1, (203, 6))
    spread[200:] = 7.0
    small.fit(outputs(features=spread, targets=rare))
    assert small.bank.shape == (20, 6)
    assert torch.isclose(small.bank, torch.full((6,), 1 / np.sqrt(6))).all(1).sum() == 3  # every rare pixel kept


def test_spectral_knn_matches_brute_force_on_standardised_spectra() -> None:
    _, spectra, labels = crafted()
    spectra = spectra * np.linspace(1, 50, 6) + 100  # bands on very different scales
    queries = np.random.default_rng(4).normal(0, 2, (30, 6)) * np.linspace(1, 50, 6) + 100
    score = build_score("spectral_knn", k=4, bank_size=1000)
    score.fit(outputs(inputs=spectra, targets=labels))
    mean, std = spectra.mean(0), spectra.std(0, ddof=1)
    bank, q = (spectra - mean) / std, (queries - mean) / std
    distances = np.sort(np.linalg.norm(q[:, None] - bank[None], axis=2), axis=1)
    np.testing.assert_allclose(score(outputs(inputs=queries)).numpy(), -distances[:, 3], rtol=1e-4, atol=1e-5)
    restored = build_score("spectral_knn", k=4, bank_size=1000)
    restored.load_state_dict(score.state_dict())
    np.testing.assert_array_equal(restored(outputs(inputs=queries)).numpy(), score(outputs(inputs=queries)).numpy())
    assert score.space == "inputs" and score.options() == {"k": 4, "bank_size": 1000, "seed": 0}


def test_registry_errors_and_defaults() -> None:
    assert set(DEFAULT_SCORES) | {"combined"} == set(OOD_SCORES) and DEFAULT_SCORE in DEFAULT_SCORES
    with pytest.raises(HsisegError, match="unknown OOD score 'entropy'; choose one of"):
        build_score("entropy")
    with pytest.raises(HsisegError, match="OOD score 'energy': temperature must be > 0"):
        build_score("energy", temperature=0)
    with pytest.raises(HsisegError, match="OOD score 'knn'.*unexpected keyword"):
        build_score("knn", neighbours=3)
    with pytest.raises(HsisegError, match="OOD score 'knn' needs the network's features; this network has none"):
        build_score("knn")(outputs(np.zeros((2, 3))))


def test_score_maps_take_the_networks_context() -> None:
    """A guided spectral-spatial network averages score maps like its probabilities; others leave them as they
    are; each map is the per-pixel score in place."""
    torch.manual_seed(0)
    image = torch.rand(1, 5, 12, 14)
    for context, smoothed in (("guided", True), ("none", False)):
        model = build_model("spectral-spatial", 5, 3, width=8, context=context).eval()
        with torch.no_grad():
            logits, features = model.forward_features(image)
        pixels = PixelOutputs(logits[0].flatten(1).T, features[0].flatten(1).T, image[0].flatten(1).T)
        maps = score_maps(model, {"max_logit": build_score("max_logit")}, pixels, features[0], (12, 14))
        per_pixel = logits[0].max(0).values
        expected = smooth_maps(model, per_pixel[None, None], features)[0, 0] if smoothed else per_pixel
        torch.testing.assert_close(maps["max_logit"], expected)
        assert smoothed != torch.allclose(maps["max_logit"], per_pixel)


def test_fit_scores_leaves_out_what_the_network_cannot_give() -> None:
    logits, _, labels = crafted()
    scores = fit_scores(list(DEFAULT_SCORES), outputs(logits, inputs=logits, targets=labels), num_leaves=4)
    assert set(scores) == {"max_softmax", "max_logit", "energy", "spectral_mahalanobis", "spectral_knn"}  # no features


def test_calibration_uses_held_out_pixels_only() -> None:
    """Training pixels are confident, held-out ones less so: the threshold follows the held-out ones."""
    rng = np.random.default_rng(3)
    training = rng.normal(9, 1, 400)
    held_out = rng.normal(2, 1, 200)
    reference = rng.normal(4, 3, 1000)
    scores = {"max_logit": build_score("max_logit")}
    calibration = calibrate(scores, {"max_logit": held_out}, {"max_logit": reference}, keep=0.9)["max_logit"]
    assert calibration.threshold == pytest.approx(np.quantile(held_out, 0.1))
    assert calibration.threshold < np.quantile(training, 0.1) - 5  # training pixels would have set another one
    assert calibration.held_out_pixels == 200 and calibration.method == "held-out" and calibration.keep == 0.9
    assert calibration.reference_share == pytest.approx((reference < calibration.threshold).mean())
    assert calibrate(scores, {"max_logit": np.zeros(0)}, {"max_logit": reference}, 0.9) == {}


def test_transfer_flags_the_same_share_of_the_reference_sample() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(0, 1, 2000)
    validated = calibrate({"energy": build_score("energy")}, {"energy": rng.normal(1, 1, 300)},
                          {"energy": reference}, 0.95)  # fmt: skip
    refit_reference = reference * 3 + 10  # a refit network's own scale
    final = transfer(validated, {"energy": refit_reference})["energy"]
    assert final.method == "transferred" and final.keep == 0.95
    assert (refit_reference < final.threshold).mean() == pytest.approx(validated["energy"].reference_share, abs=1e-3)
    assert final.threshold == pytest.approx(validated["energy"].threshold * 3 + 10, abs=0.05)


def test_reference_sample_is_fixed_per_image() -> None:
    target = torch.zeros(100, 120)
    first, again = reference_sample("a", target), reference_sample("a", target)
    np.testing.assert_array_equal(first, again)
    assert first.sum() == 4096 and not np.array_equal(first, reference_sample("b", target))
    assert reference_sample("c", torch.zeros(10, 10)).all()  # small images: every pixel


def test_invalid_pixels_do_not_leak_into_their_neighbours_scores() -> None:
    """With a guided context, a block of invalid pixels with extreme scores must not move any valid pixel's
    smoothed score outside the range of the valid pixels' own scores."""
    torch.manual_seed(1)
    model = build_model("spectral-spatial", 5, 3, width=8, context="guided").eval()
    image = torch.rand(1, 5, 20, 24)
    with torch.no_grad():
        logits, features = model.forward_features(image)
    pixels = PixelOutputs(logits[0].flatten(1).T, features[0].flatten(1).T, image[0].flatten(1).T)
    invalid = torch.zeros(20, 24, dtype=torch.bool)
    invalid[5:12, 6:14] = True
    pixels.logits[invalid.flatten()] = -1e4  # what a zeroed spectrum could score: far below everything else
    raw = pixels.logits.max(1).values.reshape(20, 24)
    maps = score_maps(model, {"max_logit": build_score("max_logit")}, pixels, features[0], (20, 24), invalid)
    valid_raw = raw[~invalid]
    smoothed = maps["max_logit"][~invalid]
    assert smoothed.min() >= valid_raw.min() - 1e-4 and smoothed.max() <= valid_raw.max() + 1e-4
    leaky = score_maps(model, {"max_logit": build_score("max_logit")}, pixels, features[0], (20, 24))
    assert leaky["max_logit"][~invalid].min() < valid_raw.min() - 1  # without the mask it would leak


def test_mahalanobis_with_one_pixel_per_class_or_constant_features() -> None:
    torch.manual_seed(2)
    for features in (torch.randn(3, 8), torch.ones(3, 8)):
        training = PixelOutputs(torch.randn(3, 3), features, None, torch.tensor([0, 1, 2]))
        score = fit_scores(["mahalanobis"], training, 3)["mahalanobis"]
        assert torch.isfinite(score(PixelOutputs(torch.randn(5, 3), torch.randn(5, 8), None))).all()


def test_mahalanobis_keeps_precision_far_from_the_origin() -> None:
    """Inputs far from 0 (uncentred spectra): distances by differences, not by |a|^2 - 2ab + |b|^2."""
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, (400, 20)) + 3000.0
    labels = np.repeat(np.arange(4), 100)
    score = build_score("spectral_mahalanobis", shrinkage=0.0)
    score.fit(outputs(inputs=values, targets=labels))
    queries = values[:50] + rng.normal(0, 0.1, (50, 20))
    means = np.stack([values[labels == c].mean(0) for c in range(4)])
    centred = values - means[labels]
    precision = np.linalg.inv(centred.T @ centred / 396)
    expected = [-min((q - m) @ precision @ (q - m) for m in means) for q in queries]
    np.testing.assert_allclose(score(outputs(inputs=queries)).numpy(), expected, rtol=2e-3, atol=0.05)


@pytest.mark.parametrize("name", ["mahalanobis", "spectral_knn"])
def test_calibration_keeps_the_promised_share_of_fresh_known_pixels(name: str) -> None:
    """Known classes drawn from fixed Gaussians: a threshold calibrated on held-out pixels keeps ~95% of fresh
    known pixels (binomial tolerance), and flags most pixels of a class never trained on."""
    rng = np.random.default_rng(5)
    centres = rng.normal(0, 4, (3, 6))

    def draw(count: int, classes=(0, 1, 2)) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.array(classes), count)
        return centres[labels] + rng.normal(0, 1, (labels.size, 6)), labels

    space = "features" if name == "mahalanobis" else "inputs"
    score = build_score(name)
    train_x, train_y = draw(400)
    score.fit(outputs(**{space: train_x, "targets": train_y}))
    held_x, _ = draw(400)
    held = {name: score(outputs(**{space: held_x})).numpy()}
    calibration = calibrate({name: score}, held, held, keep=0.95)[name]
    fresh_x, _ = draw(4000)
    kept = (score(outputs(**{space: fresh_x})).numpy() >= calibration.threshold).mean()
    assert abs(kept - 0.95) < 0.02  # 12000 fresh pixels: the binomial sd is 0.002, calibration noise ~0.006
    unseen = rng.normal(0, 1, (500, 6)) + centres.mean(0) + 6  # a class far from every trained one
    assert (score(outputs(**{space: unseen})).numpy() < calibration.threshold).mean() > 0.9


def test_combined_is_the_minimum_of_its_parts_scaled_by_their_training_spread() -> None:
    _, features, labels = crafted(pixels=80)
    inputs = np.random.default_rng(6).normal(0, 1, (80, 5)) + labels[:, None]
    training = outputs(features=features, inputs=inputs, targets=labels)
    score = build_score("combined")
    score.fit(training)
    assert score.spaces == ("features", "inputs") and score.options() == {"parts": ["mahalanobis", "spectral_knn"]}
    rng = np.random.default_rng(7)
    queries = outputs(features=rng.normal(0, 3, (40, 6)), inputs=rng.normal(0, 3, (40, 5)))
    expected = []
    for name in ("mahalanobis", "spectral_knn"):  # each part fitted alone, scaled by its own training quantiles
        part = build_score(name)
        part.fit(training)
        own = part(training).numpy().astype(np.float64)
        low, median = np.quantile(own, 0.05), np.sort(own)[(own.size - 1) // 2]  # torch's (lower) median
        expected.append((part(queries).numpy() - low) / (median - low))
    np.testing.assert_allclose(score(queries).numpy(), np.minimum(*expected), rtol=1e-4, atol=1e-5)
    restored = build_score("combined")
    restored.load_state_dict(score.state_dict())
    np.testing.assert_array_equal(restored(queries).numpy(), score(queries).numpy())
    with pytest.raises(HsisegError, match="parts must name"):
        build_score("combined", parts=[])
    assert "combined" not in fit_scores(["combined"], outputs(features=features, targets=labels), 4)  # no inputs


@pytest.mark.parametrize("name", sorted(DEFAULT_SCORES))
def test_a_score_moved_to_a_device_is_a_copy_with_its_state_there(name: str) -> None:
    """What the prediction scores on a GPU with: every learnt tensor on that device (the meta device stands in
    for one here), the original untouched, and a score already there returned as it is."""
    generator = torch.Generator().manual_seed(0)
    training = PixelOutputs(torch.randn(300, 4, generator=generator), torch.randn(300, 6, generator=generator),
                            torch.rand(300, 5, generator=generator), torch.arange(300) % 3)  # fmt: skip
    score = build_score(name)
    score.fit(training)
    before = {key: value.clone() for key, value in score.state_dict().items()}
    moved = score.to(torch.device("meta"))
    assert all(value.device.type == "meta" for value in moved.state_dict().values())
    assert moved is not score or not before
    for key, value in score.state_dict().items():
        assert value.device.type == "cpu" and torch.equal(value, before[key])
    assert score.to(torch.device("cpu")) is score
