"""ExplanationLogger: maps of fixed validation images in TensorBoard every N epochs, configured like any callback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fmnist.errors import FmnistError
from fmnist.interpret.callback import ExplanationLogger, round_robin
from fmnist.training import fit
from fmnist.training.lightning_cli import FmnistCLI

ROOT = Path(__file__).resolve().parents[2]
CALLBACK = "fmnist.interpret.callback.ExplanationLogger"


def _tiny(synthetic_data_dir: str, **extra) -> dict:
    return {"data.data_dir": synthetic_data_dir, "data.batch_size": 32, "trainer.limit_train_batches": 3,
            "trainer.limit_val_batches": 1, "trainer.limit_test_batches": 1, "trainer.enable_progress_bar": False,
            "trainer.enable_model_summary": False, **extra}


def test_round_robin_takes_every_class_before_any_twice() -> None:
    labels = torch.tensor([0, 0, 1, 2, 1, 0, 2])
    assert round_robin(labels, 4) == [0, 2, 3, 1]
    assert round_robin(labels, 100) == [0, 2, 3, 1, 4, 6, 5]


def test_maps_reach_tensorboard_every_n_epochs_from_a_config(synthetic_data_dir: str, tmp_path: Path) -> None:
    callbacks = [{"class_path": CALLBACK, "init_args": {"every_n_epochs": 2, "num_images": 4, "method": "gradcam"}}]
    run = fit("cnn", epochs=4, seed=0, logdir=tmp_path,
              overrides=_tiny(synthetic_data_dir, **{"trainer.callbacks": callbacks, "early_stopping.patience": 10}))
    events = EventAccumulator(str(run.dir), size_guidance={"images": 0}).Reload()
    assert "explanations/gradcam" in events.Tags()["images"]
    images = events.Images("explanations/gradcam")
    assert [image.step for image in images] == [6, 12]  # after epochs 2 and 4 (3 batches each)
    assert all(image.encoded_image_string.startswith(b"\x89PNG") and image.width > 300 for image in images)
    blank = events.Scalars("explanations/gradcam_blank_rate")
    assert [s.step for s in blank] == [6, 12] and all(0.0 <= s.value <= 1.0 for s in blank)


def test_command_line_adds_it_like_any_other_callback(tmp_path: Path) -> None:
    cli = FmnistCLI(args=["--config", str(ROOT / "configs" / "cnn.yaml"), "--trainer.logger", "false",
                          "--trainer.default_root_dir", str(tmp_path),
                          f"--trainer.callbacks+={CALLBACK}", "--trainer.callbacks.every_n_epochs=3",
                          "--trainer.callbacks.method=occlusion"], run=False)
    logger = next(c for c in cli.trainer.callbacks if isinstance(c, ExplanationLogger))
    assert logger.every_n_epochs == 3 and logger.method.name == "occlusion"


def test_without_tensorboard_it_says_so_before_training(synthetic_data_dir: str, tmp_path: Path) -> None:
    callbacks = [{"class_path": CALLBACK}]
    with pytest.raises(FmnistError, match="no TensorBoardLogger"):
        fit("cnn", epochs=1, logdir=tmp_path,
            overrides=_tiny(synthetic_data_dir, **{"trainer.callbacks": callbacks, "trainer.logger": False,
                                                    "trainer.default_root_dir": str(tmp_path)}))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"every_n_epochs": 0}, "every_n_epochs must be at least 1"),
    ({"num_images": 0}, "num_images must be at least 1"),
    ({"method": "lime"}, "unknown explanation method 'lime'"),
])
def test_bad_settings_are_one_sentence(kwargs: dict, message: str) -> None:
    with pytest.raises(FmnistError, match=message):
        ExplanationLogger(**kwargs)
