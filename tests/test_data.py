"""hsiseg.dataset.torch_datasets: annotated-biased patches, label-preserving augmentation, caching, full-image mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hsiseg import HsisegError
from hsiseg.annotations import UNLABELLED
from hsiseg.dataset.spec import DataSpec
from hsiseg.dataset.torch_datasets import Augmentation, SpecDataset, make_loader
from hsiseg.synthetic.dataset import generate_demo_data


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> DataSpec:
    folder = tmp_path_factory.mktemp("demo")
    generate_demo_data(folder, surgeries=3, frames=2, shape=(64, 80), seed=2)
    return DataSpec.from_file(folder / "demo.yaml")


def annotated_fraction(dataset: SpecDataset) -> float:
    targets = torch.stack([dataset[i]["target"] for i in range(len(dataset))])
    return float((targets != UNLABELLED).float().mean())


def test_sampler_bias_beats_uniform_crops(spec: DataSpec) -> None:
    biased = SpecDataset(spec, "train", patch_size=16, patches_per_epoch=200, annotated_bias=0.9)
    uniform = SpecDataset(spec, "train", patch_size=16, patches_per_epoch=200, annotated_bias=0.0)
    image_rate = np.mean([(s.target != UNLABELLED).mean() for s in biased._memory.values()])
    uniform_rate, biased_rate = annotated_fraction(uniform), annotated_fraction(biased)
    assert uniform_rate < 2 * image_rate  # uniform crops see about the image's annotated rate
    assert biased_rate > 3 * image_rate and biased_rate > 2.5 * uniform_rate


def test_items_shapes_and_determinism(spec: DataSpec) -> None:
    dataset = SpecDataset(spec, "train", patch_size=24, patches_per_epoch=10, augmentation=Augmentation())
    item = dataset[3]
    assert item["image"].shape == (100, 24, 24) and item["image"].dtype == torch.float32
    assert item["target"].shape == (24, 24) and item["target"].dtype == torch.int64
    assert torch.equal(dataset[3]["image"], item["image"])  # same seed, epoch and index
    dataset.set_epoch(1)
    assert not torch.equal(dataset[3]["image"], item["image"])
    batch = next(iter(make_loader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 100, 24, 24)


def test_augmentation_keeps_labels_on_their_pixels() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 5, (9, 7)).astype(np.int32)
    image = np.stack([labels.astype(np.float32), -labels.astype(np.float32)], -1)  # the image encodes the label
    geometric = Augmentation(spectral_scale=0.0, noise=0.0)
    for seed in range(12):
        out, (moved,) = geometric(image, [labels], np.random.default_rng(seed))
        np.testing.assert_array_equal(out[..., 0], moved)
    spectral = Augmentation(flips=False, rotations=False, spectral_scale=0.1, noise=0.05)
    original = image.copy()
    out, (same,) = spectral(image, [labels], rng)
    np.testing.assert_array_equal(same, labels)
    assert not np.array_equal(out, image)
    np.testing.assert_array_equal(image, original)  # the input is never modified


def test_full_mode_has_dense_truth(spec: DataSpec) -> None:
    dataset = SpecDataset(spec, "val", mode="full")
    item = dataset[0]
    assert item["image"].shape == (100, 64, 80)
    assert (item["truth"] != UNLABELLED).all()
    labelled = item["target"] != UNLABELLED
    assert torch.equal(item["target"][labelled], item["truth"][labelled])
    # l1 preprocessing from the spec: every valid spectrum sums to 1
    sums = item["image"].abs().sum(0)
    torch.testing.assert_close(sums[sums > 0], torch.ones_like(sums[sums > 0]))


def test_hdf5_cache_equals_memory(spec: DataSpec, tmp_path: Path) -> None:
    memory = SpecDataset(spec, "val", mode="full")
    disk = SpecDataset(spec, "val", mode="full", cache=tmp_path)
    first = disk[0]
    assert len(list(tmp_path.glob("*.h5"))) == 1
    again = SpecDataset(spec, "val", mode="full", cache=tmp_path)[0]
    assert torch.equal(first["image"], memory[0]["image"]) and torch.equal(again["image"], first["image"])


def test_padding_when_the_patch_is_larger_than_the_image(spec: DataSpec) -> None:
    item = SpecDataset(spec, "train", patch_size=96, patches_per_epoch=2)[0]
    assert item["image"].shape == (100, 96, 96)
    assert (item["target"][64:] == UNLABELLED).all() and (item["image"][:, 64:] == 0).all()


def test_empty_split_is_an_error(spec: DataSpec, tmp_path: Path) -> None:
    import yaml

    content = yaml.safe_load(spec.path.read_text())
    content["splits"] = {"train": [content["samples"][0]["id"]], "val": []}
    content["root"] = str(spec.root)
    content["label_tree"] = str(spec.path.parent / content["label_tree"])
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(HsisegError, match="split 'val' .* is empty"):
        SpecDataset(DataSpec.from_file(path), "val")
