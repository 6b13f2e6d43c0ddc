"""Settings that were renamed stop with one sentence naming the new key, on every way into training."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmnist.commands.shims import train_py as train_main
from fmnist.data.augment import AugmentSettings
from fmnist.data.datamodule import ImageDataModule
from fmnist.errors import FmnistError
from fmnist.training.api import resolve_config


@pytest.mark.parametrize("argv, where", [
    (["fit", "--model.model_name", "deep", "--data.rotation", "0.1"], "the command line"),
    (["fit", "--model.model_name", "deep", "--data.augment=true"], "the command line"),
    (["--model", "deep", "--data.augment", "true"], "the settings given"),
])
def test_the_command_line_names_the_new_key(argv: list[str], where: str, capsys: pytest.CaptureFixture) -> None:
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data.") and " is now data.augment." in err and f"rename it in {where}." in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_config_file_with_old_keys_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "old.yaml"
    config.write_text("model:\n  model_name: deep\ndata:\n  augment: true\n  hflip: true\n")
    assert train_main(["fit", "--config", str(config)]) == 2
    assert capsys.readouterr().err == (f"error: data.augment is now data.augment.enabled (and 1 more: data.hflip): "
                                       f"augmentation settings are one group, data.augment.*; rename it in {config}.\n")


def test_the_python_api_names_the_new_key() -> None:
    with pytest.raises(FmnistError, match="data.translate is now data.augment.translate"):
        resolve_config("vggbn", overrides={"data.translate": 0.1})
    assert resolve_config("vggbn", overrides={"data.augment.translate": 0.1})["data"]["augment"]["translate"] == 0.1


def test_a_run_saved_with_the_old_spelling_rebuilds_its_data_module() -> None:
    """Checkpoints written before the grouping keep flat settings: the evaluator reads them as they were."""
    old = {"dataset": "fashion", "batch_size": 32, "augment": True, "rotation": 0.0, "hflip": True, "augment_share": 0.5,
           "val_fraction": 0.2}
    module = ImageDataModule.from_hparams(old, data_dir="/nowhere")
    assert module.augment == AugmentSettings(enabled=True, rotation=0.0, hflip=True, share=0.5)
    assert module.hparams.val_fraction == 0.2 and module.hparams.batch_size == 32
    assert module.hparams.augment["share"] == 0.5  # saved as plain values: checkpoints load weights-only
