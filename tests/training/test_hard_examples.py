"""Training later epochs on the hardest images: the sampler's selection and the callback inside a real fit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch

from fmnist.data.datamodule import InMemoryDataset
from fmnist.data.selection import HardExampleSampler
from fmnist.errors import FmnistError
from fmnist.training import fit
from fmnist.training.hard_examples import FocusOnHardExamples, planned_training_steps
from fmnist.training.weight_averaging import refresh_batch_norm

# The speedrun recipe brings its own FocusOnHardExamples; these tests hand in theirs (or none).
ROOT = Path(__file__).resolve().parents[2]
QUIET = {"trainer.enable_progress_bar": False, "trainer.enable_model_summary": False, "trainer.callbacks": []}


def test_sampler_yields_every_image_once_until_focused() -> None:
    sampler = HardExampleSampler(10, keep=0.3)
    sampler.set_epoch(0)
    assert sorted(sampler) == list(range(10)) and len(sampler) == 10


def test_focus_keeps_the_highest_losses_and_records_by_position() -> None:
    sampler = HardExampleSampler(8, keep=0.25)
    order = list(sampler)
    # Image i gets loss i: the batch positions map back to images through this epoch's order.
    sampler.record(0, torch.tensor([float(i) for i in order[:4]]))
    sampler.record(4, torch.tensor([float(i) for i in order[4:]]))
    assert sampler.focus().tolist() == [6, 7]
    sampler.set_epoch(1)
    assert sorted(sampler) == [6, 7] and len(sampler) == 2


def test_unscored_images_count_as_hardest() -> None:
    sampler = HardExampleSampler(6, keep=0.5)
    order = list(sampler)
    sampler.record(0, torch.zeros(3))  # only the first three positions were scored
    assert sorted(sampler.focus().tolist()) == sorted(order[3:])


def test_explore_share_comes_from_the_easier_rest() -> None:
    sampler = HardExampleSampler(100, keep=0.2, explore=0.5, seed=1)
    list(sampler)
    sampler.losses = torch.arange(100, dtype=torch.float32)
    chosen = set(sampler.focus().tolist())
    assert len(chosen) == 20
    assert set(range(90, 100)) <= chosen  # the 10 hardest by loss
    assert len(chosen - set(range(90, 100))) == 10  # 10 more drawn from the 90 easier ones


def test_order_depends_on_the_epoch_not_on_how_often_it_is_iterated() -> None:
    sampler = HardExampleSampler(50, keep=0.5, seed=3)
    sampler.set_epoch(2)
    first, again = list(sampler), list(sampler)
    sampler.set_epoch(3)
    assert first == again and list(sampler) != first


def test_state_round_trip_and_size_mismatch() -> None:
    sampler = HardExampleSampler(10, keep=0.5)
    list(sampler)
    sampler.record(0, torch.arange(10, dtype=torch.float32))
    sampler.focus()
    restored = HardExampleSampler(10, keep=0.5)
    restored.load_state_dict(sampler.state_dict())
    assert torch.equal(restored.losses, sampler.losses) and torch.equal(restored.active, sampler.active)
    with pytest.raises(FmnistError, match="covers 10 training images but this training set has 12"):
        HardExampleSampler(12, keep=0.5).load_state_dict(sampler.state_dict())


@pytest.mark.parametrize(("kwargs", "message"), [({"keep": 0.0}, "keep must be"), ({"keep": 1.5}, "keep must be"),
                                                 ({"start_epoch": 0}, "start_epoch must be"),
                                                 ({"explore": 1.0}, "explore must be")])
def test_bad_settings_are_one_sentence(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(FmnistError, match=message):
        FocusOnHardExamples(**kwargs)


def test_record_past_the_epoch_is_refused() -> None:
    sampler = HardExampleSampler(4, keep=0.5)
    list(sampler)
    with pytest.raises(FmnistError, match="order ends at 4"):
        sampler.record(2, torch.zeros(3))


def test_two_processes_split_each_epoch_and_agree_after_merging() -> None:
    """DDP: rank 0 and 1 take alternate positions of one shared order (padded to equal lengths); after the merge
    both tables hold every image's loss and both choose the same images."""
    ranks = [HardExampleSampler(11, keep=0.5, seed=2, num_replicas=2, rank=r) for r in (0, 1)]
    orders = [list(sampler) for sampler in ranks]
    assert [len(o) for o in orders] == [6, 6] and set(orders[0]) | set(orders[1]) == set(range(11))
    for sampler, order in zip(ranks, orders, strict=True):
        sampler.record(0, torch.tensor([float(i) for i in order]))  # image i: loss i, whoever scored it
    tables = [torch.stack([torch.where(s.scored, s.losses, 0.0), s.scored.float()]) for s in ranks]
    summed = tables[0] + tables[1]
    for sampler in ranks:
        sampler.merge(lambda table: summed)
    assert torch.equal(ranks[0].losses, torch.arange(11, dtype=torch.float32))
    assert torch.equal(ranks[1].losses, ranks[0].losses) and not ranks[0].scored.any()
    assert ranks[0].focus().tolist() == ranks[1].focus().tolist() == [5, 6, 7, 8, 9, 10]
    for sampler in ranks:
        sampler.set_epoch(1)
    assert sorted(list(ranks[0]) + list(ranks[1])) == [5, 6, 7, 8, 9, 10]


def test_plan_counts_each_process_share() -> None:
    trainer = _fake_trainer(500)
    trainer.world_size = 2  # 250 images a process: 4 batches of 64, then 125 a process: 2 batches
    assert FocusOnHardExamples(keep=0.5).planned_steps(trainer) == 4 + 3 * 2


def test_refused_for_foreign_data() -> None:
    with pytest.raises(FmnistError, match="needs fmnist's data module"):
        FocusOnHardExamples().setup(SimpleNamespace(world_size=1, datamodule=object()), None, "fit")


class _StepSpy(L.Callback):
    """What the fit really ran: steps, each epoch's batches, and the schedule's planned length."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.global_step = self.planned = self.schedule_total = -1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches.append(trainer.fit_loop.epoch_loop.batch_progress.current.completed)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.global_step = trainer.global_step
        self.planned = planned_training_steps(trainer)
        self.schedule_total = trainer.lr_scheduler_configs[0].scheduler.total_steps


def test_fit_trains_later_epochs_on_the_hardest_half_and_plans_the_schedule(synthetic_data_dir: str,
                                                                           tmp_path: Any) -> None:
    """510 training images at batch 64: 8 batches, then 255 images (4 batches) twice; one-cycle over 16 steps."""
    focus, spy = FocusOnHardExamples(keep=0.5, start_epoch=1), _StepSpy()
    run = fit("speedrun", seed=0, epochs=3, logdir=tmp_path, callbacks=[focus, spy],
              overrides={"data.data_dir": synthetic_data_dir, "data.batch_size": 64, **QUIET})
    assert spy.batches == [8, 4, 4]
    assert spy.global_step == spy.planned == spy.schedule_total == 16
    assert len(focus.sampler.active) == 255 and torch.isfinite(focus.sampler.losses).all()
    assert run.metrics["test_acc"] is not None
    saved = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    state = next(v for k, v in saved["callbacks"].items() if k.startswith("FocusOnHardExamples"))
    assert state["size"] == 510 and len(state["active"]) == 255  # a resumed fit keeps the selection


def test_without_the_callback_the_schedule_is_lightnings_estimate(synthetic_data_dir: str, tmp_path: Any) -> None:
    spy = _StepSpy()
    fit("speedrun", seed=0, epochs=2, logdir=tmp_path, callbacks=[spy],
        overrides={"data.data_dir": synthetic_data_dir, "data.batch_size": 64, **QUIET})
    assert spy.batches == [8, 8] and spy.global_step == spy.schedule_total == 16


def test_bn_statistics_are_measured_again_on_every_image_after_each_focused_epoch(
        synthetic_data_dir: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int, int, bool]] = []

    def spy(pl_module: L.LightningModule, trainer: L.Trainer, batches: int, loader: Any = None) -> int:
        calls.append((trainer.current_epoch, batches, len(loader.dataset),
                      isinstance(loader.sampler, HardExampleSampler)))
        return batches

    monkeypatch.setattr("fmnist.training.hard_examples.refresh_batch_norm", spy)
    focus = FocusOnHardExamples(keep=0.5, start_epoch=1, bn_refresh_batches=3)
    fit("speedrun", seed=0, epochs=3, logdir=tmp_path, callbacks=[focus],
        overrides={"data.data_dir": synthetic_data_dir, "data.batch_size": 64, **QUIET})
    assert calls == [(1, 3, 510, False), (2, 3, 510, False)]  # not after the full first epoch


def test_bn_refresh_uses_the_given_loader() -> None:
    """The refresh reads the loader it is handed (all images), not the fit's focused loader."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    constant = [(torch.full((4, 1, 5, 5), 3.0), torch.zeros(4))] * 2
    trainer = SimpleNamespace(strategy=SimpleNamespace(batch_to_device=lambda batch, dataloader_idx: batch),
                              train_dataloader=None)
    assert refresh_batch_norm(model, trainer, batches=5, loader=constant) == 2
    assert model[1].running_var.abs().max() < 1e-6  # constant inputs: zero variance, measured from the loader


def test_balanced_selection_keeps_the_share_within_each_class() -> None:
    labels = torch.tensor([0] * 6 + [1] * 4)
    sampler = HardExampleSampler(10, keep=0.5, labels=labels)
    list(sampler)
    sampler.losses = torch.tensor([9.0, 8, 7, 6, 5, 4, 1, 2, 3, 0.5])  # class 0 is the hard one
    assert sampler.focus().tolist() == [0, 1, 2, 7, 8]  # 3 of class 0, 2 of class 1, not the 5 hardest overall
    assert sampler.focused_size == len(sampler) == 5


def test_balanced_plan_counts_each_class_rounding(synthetic_data_dir: str, tmp_path: Any) -> None:
    """Per-class rounding can make more images than keep * size: the schedule plans what really runs."""
    spy = _StepSpy()
    fit("speedrun", seed=0, epochs=3, logdir=tmp_path, callbacks=[FocusOnHardExamples(keep=0.5, balanced=True), spy],
        overrides={"data.data_dir": synthetic_data_dir, "data.batch_size": 64, **QUIET})
    assert spy.global_step == spy.planned == spy.schedule_total == sum(spy.batches)


def _fake_trainer(size: int, batch_size: int = 64, max_epochs: int = 4, accumulate: int = 1,
                  max_steps: int = -1) -> SimpleNamespace:
    labels = torch.arange(size) % 10
    data = SimpleNamespace(train_set=InMemoryDataset(torch.zeros(size, 28, 28, dtype=torch.uint8), labels),
                           train_sampler=None, batch_size=batch_size, hparams=SimpleNamespace(seed=5))
    return SimpleNamespace(datamodule=data, max_epochs=max_epochs, accumulate_grad_batches=accumulate,
                           max_steps=max_steps, world_size=1, global_rank=0, reload_dataloaders_every_n_epochs=0)


@pytest.mark.parametrize(("start_epoch", "accumulate", "max_steps", "limit", "steps"),
                         [(1, 1, -1, 1.0, 8 + 3 * 4), (2, 1, -1, 1.0, 2 * 8 + 2 * 4), (1, 2, -1, 1.0, 4 + 3 * 2),
                          (1, 1, 10, 1.0, 10), (1, 1, -1, 3, 4 * 3), (1, 1, -1, 0.5, 4 + 3 * 2)])
def test_plan_counts_full_then_focused_epochs(start_epoch: int, accumulate: int, max_steps: int, limit: float,
                                              steps: int) -> None:
    """500 images at batch 64: 8 batches a full epoch, 4 a focused one (250 images); Lightning's limits apply."""
    trainer = _fake_trainer(500, accumulate=accumulate, max_steps=max_steps)
    trainer.limit_train_batches = limit
    assert FocusOnHardExamples(keep=0.5, start_epoch=start_epoch).planned_steps(trainer) == steps


def test_a_resumed_fit_gets_the_checkpoints_selection_back() -> None:
    trainer = _fake_trainer(100)
    first = FocusOnHardExamples(keep=0.2)
    first.setup(trainer, None, "fit")
    first.on_fit_start(trainer, None)
    assert trainer.reload_dataloaders_every_n_epochs == 1 and trainer.datamodule.train_sampler is first.sampler
    list(first.sampler)
    first.sampler.record(0, torch.rand(100))
    first.sampler.focus()
    state = first.state_dict()

    resumed, trainer = FocusOnHardExamples(keep=0.2), _fake_trainer(100)
    resumed.load_state_dict(state)  # Lightning restores callback states before on_fit_start
    resumed.setup(trainer, None, "fit")
    resumed.on_fit_start(trainer, None)
    assert torch.equal(resumed.sampler.active, first.sampler.active)
    assert torch.equal(resumed.sampler.losses, first.sampler.losses)


def test_ddp_fit_on_cpu_with_two_processes(synthetic_data_dir: str, tmp_path: Any) -> None:
    """The speedrun recipe as shipped (epochs 2-3 on the hardest third) in two processes: each trains on its half
    of every selection, and the one-cycle schedule ends exactly at the last step (it raises past its plan)."""
    env = {**os.environ, "FMNIST_NO_DOWNLOAD": "1", "PYTHONWARNINGS": "ignore", "FMNIST_WARM": "0"}
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--model", "speedrun", "--logdir", str(tmp_path),
                           "--data.data_dir", synthetic_data_dir, "--data.batch_size", "64",
                           "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
                           "--trainer.devices", "2", "--trainer.strategy", "ddp"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = next((tmp_path / "speedrun" / "version_0" / "checkpoints").glob("*.ckpt"))
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = next(v for k, v in saved["callbacks"].items() if k.startswith("FocusOnHardExamples"))
    assert state["size"] == 510 and len(state["active"]) == 170 and torch.isfinite(state["losses"]).all()
    assert saved["global_step"] == 4 + 2 * 2  # 255 images a process (4 batches), then 85 (2 batches), twice
