"""The first run is quiet: Lightning's messages that tell a user nothing are filtered, each matched exactly."""

from __future__ import annotations

import warnings

import lightning as L
from lightning.pytorch.utilities.model_summary import ModelSummary

from fmnist.training.module import Classifier
from fmnist.training.quiet import quiet_known_noise


def summary_warnings(quiet: bool) -> list[str]:
    """Warnings raised while Lightning summarises ``deep`` under bf16 autocast (what every bf16 run prints)."""
    with warnings.catch_warnings(record=True) as caught:  # restores the filters afterwards
        warnings.simplefilter("always")
        if quiet:
            quiet_known_noise()
        module = Classifier("deep")
        module.example_input_array = None  # sizes of the layers' outputs need a data hook this bare Trainer lacks
        module.trainer = L.Trainer(precision="bf16-mixed", accelerator="cpu", devices=1, logger=False,
                                   enable_progress_bar=False)
        summary = ModelSummary(module)
        assert summary.trainable_parameters == 94_154  # the summary itself is still made
        warnings.warn("Precision bf16-mixed is something else entirely", UserWarning, stacklevel=1)
    return [str(w.message) for w in caught]


def test_bf16_model_summary_warning_is_silenced_and_only_it() -> None:
    loud = summary_warnings(quiet=False)
    assert any("is not supported by the model summary" in m for m in loud)  # Lightning still says it
    quiet = summary_warnings(quiet=True)
    assert not any("is not supported by the model summary" in m for m in quiet)
    assert "Precision bf16-mixed is something else entirely" in quiet  # a different warning still shows
