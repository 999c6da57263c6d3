"""hsiseg.registry: one way to keep things by name. Unknown names and options fail with the closest valid
one, before any data is read; every registry of the toolkit is a Registry; a frame writer or an exporter
registered outside hsiseg is used by the pipeline."""

from __future__ import annotations

import pytest
from torch import nn
from typer.testing import CliRunner

import hsiseg.dataset.spec
from hsiseg import HsisegError
from hsiseg.export import EXPORTERS, check_exports
from hsiseg.io import READERS, WRITERS, detect_format
from hsiseg.io.recording import RECORDING_READERS
from hsiseg.losses import LOSSES
from hsiseg.models import MODELS, network_of
from hsiseg.ood import OOD_SCORES
from hsiseg.predict.frame_outputs import FRAME_WRITERS
from hsiseg.registry import Registry
from hsiseg.training import TrainConfig, train
from hsiseg_cli.main import app


def sample(first: int, second: str = "x", *, third: float = 1.0) -> tuple:
    return first, second, third


def test_check_names_the_closest_name_and_the_valid_options() -> None:
    registry: Registry = Registry("widget", skip=("first",))
    registry.add("sample", sample, colour="red")
    assert registry.check("sample", {"second": "y", "third": 2.0}) == "sample"
    assert registry.options("sample") == {"second": "x", "third": 1.0} and registry.meta("sample") == {"colour": "red"}
    with pytest.raises(HsisegError, match=r"unknown widget 'sampel'; choose one of \['sample'\]; did you mean"):
        registry.check("sampel")
    with pytest.raises(HsisegError, match=r"unknown widget 'zzz'; choose one of \['sample'\]$"):
        registry.check("zzz")
    with pytest.raises(HsisegError, match=r"has no option\(s\) \['thrid'\]; its options are \['second', 'third'\]; "
                                          r"did you mean 'third'"):  # fmt: skip
        registry.check("sample", {"thrid": 3})
    with pytest.raises(HsisegError, match="unknown --thing 'zzz'"):
        registry.lookup("zzz", parameter="--thing")
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("sample", lambda: None)


@pytest.mark.parametrize(
    "registry", [LOSSES, MODELS, READERS, WRITERS, OOD_SCORES, RECORDING_READERS, FRAME_WRITERS, EXPORTERS]
)
def test_every_registry_of_the_toolkit_is_one(registry) -> None:
    assert isinstance(registry, Registry) and len(registry) > 1
    for name in registry:
        assert registry.check(name) == name


def test_cube_formats_are_found_from_their_registered_suffixes_and_magic(tmp_path) -> None:
    for name in READERS:
        for suffix in READERS.meta(name).get("suffixes", ()):
            assert detect_format(tmp_path / f"cube{suffix}") == name
    (tmp_path / "cube.bin").write_bytes(b"\x93NUMPY rest")
    assert detect_format(tmp_path / "cube.bin") == "npy"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"loss": "tree-wasserstien"}, "unknown loss 'tree-wasserstien'.*did you mean 'tree-wasserstein'"),
        ({"loss": "tree-ce", "loss_options": {"top_level_weigth": 2}}, "did you mean 'top_level_weight'"),
        ({"model": "unett"}, "unknown model 'unett'.*did you mean 'unet'"),
        ({"model": "pixel", "model_options": {"widht": 8}}, "model 'pixel' has no option.*did you mean 'width'"),
        ({"model_options": {"contex": "none"}}, "model 'spectral-spatial' has no option.*did you mean 'context'"),
        ({"ood_scores": ["mahalanobis", "knnn"]}, "unknown ood_scores entry 'knnn'.*did you mean 'knn'"),
    ],
)
def test_unknown_names_fail_before_any_data_is_read(tmp_path, monkeypatch, options, message) -> None:
    def no_reading(*args, **kwargs):
        raise AssertionError("the data spec was read before the configuration was checked")

    monkeypatch.setattr(hsiseg.dataset.spec.DataSpec, "from_file", no_reading)
    with pytest.raises(HsisegError, match=message):
        train(tmp_path / "spec.yaml", tmp_path / "run", TrainConfig(**options))
    assert not (tmp_path / "run").exists()


def test_the_command_line_names_the_loss_typo(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(hsiseg.dataset.spec.DataSpec, "from_file", lambda *a, **k: pytest.fail("spec read"))
    (tmp_path / "spec.yaml").write_text("name: x\n")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "run"),
                                      "--loss", "tree-wasserstien"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "did you mean 'tree-wasserstein'" in result.output


def test_a_foreign_network_gets_the_contract_defaults() -> None:
    import torch

    foreign = network_of(nn.Conv2d(3, 2, 1))
    maps = torch.rand(1, 2, 4, 4)
    assert not foreign.has_features and not foreign.pixelwise_training and not foreign.has_context
    assert foreign.input_multiple == 1 and foreign.smooth_maps(maps, maps) is maps
    with pytest.raises(NotImplementedError, match="does not expose its penultimate features"):
        foreign.forward_features(torch.rand(1, 3, 4, 4))


def test_exporters_are_ordered_by_what_they_need() -> None:
    assert check_exports(["html", "mp4"]) == ["areas", "html", "mp4"]
    assert check_exports(["mp4", "areas"]) == ["mp4", "areas"]
    with pytest.raises(HsisegError, match="unknown export 'htm'.*did you mean 'html'"):
        check_exports(["htm"])
