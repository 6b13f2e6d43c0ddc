"""A recipe's fingerprint changes with what a run does, not with how its settings are spelled."""

from __future__ import annotations

import pytest

from fmnist.ledger import fingerprint
from fmnist.training.api import resolve_config
from fmnist.training.recipe import canonical_key, training_recipe


def _fp(model: str = "deep", **kwargs: object) -> str:
    return fingerprint(training_recipe(resolve_config(model, **kwargs)))  # type: ignore[arg-type]


def test_where_and_how_fast_a_run_goes_is_not_its_recipe() -> None:
    assert _fp(seed=1, logdir="/tmp/a", name="x") == _fp(seed=2, logdir="/tmp/b", name="y", version="version_3")
    assert _fp(overrides={"data.data_dir": "/data", "model.cpu_threads": 1, "trainer.precision": "bf16-mixed",
                          "trainer.enable_progress_bar": False, "data.num_workers": 2}) == _fp()


def test_what_a_run_does_is() -> None:
    base = _fp()
    changed = {_fp(overrides={"model.lr": 0.002}), _fp(epochs=3), _fp(overrides={"data.train_subset": 10000}),
               _fp(optimizer="sgd"), _fp(overrides={"data.augment.enabled": True})}
    assert base not in changed and len(changed) == 5


def test_a_setting_written_out_at_its_default_is_the_same_recipe() -> None:
    assert _fp(overrides={"model.weight_decay": 0.0, "data.val_fraction": 0.15, "early_stopping.patience": 3}) == _fp()


def test_a_study_alias_is_its_model() -> None:
    """cnn2 is a second name of scratch (study B's table): the same recipe under either name."""
    assert _fp("cnn2") == _fp("scratch", config="configs/cnn2.yaml")


@pytest.mark.parametrize(("old", "new"), [("data.rotation", "data.augment.rotation"),
                                          ("data.augment", "data.augment.enabled"),
                                          ("data.augment_share", "data.augment.share"),
                                          ("model.lr", "model.lr")])
def test_augmentation_settings_have_one_spelling(old: str, new: str) -> None:
    assert canonical_key(old) == new and canonical_key(new) == new


def test_records_made_before_the_grouping_keep_their_fingerprint() -> None:
    """configs/photo.yaml (every augmentation setting) as it was written before data.augment.* became one group:
    the flat spelling and ``augment: true`` give the same recipe, so the ledger's records stay current."""
    grouped = resolve_config("vggbn", config="configs/photo.yaml")
    settings = dict(grouped["data"]["augment"])
    flat = {**grouped, "data": {**{k: v for k, v in grouped["data"].items() if k != "augment"},
                                "augment": settings.pop("enabled"), "augment_share": settings.pop("share"), **settings}}
    assert len(settings) == 12 and flat["data"]["augment"] is True and "rotation" in flat["data"]
    assert fingerprint(training_recipe(flat)) == fingerprint(training_recipe(grouped))


def test_moving_a_callbacks_module_changes_no_recipe() -> None:
    cfg = resolve_config("deep")
    moved = resolve_config("deep")
    moved["trainer"]["callbacks"][0]["class_path"] = "fmnist.somewhere.else.BatchNormEMA"
    assert fingerprint(training_recipe(moved)) == fingerprint(training_recipe(cfg))
    renamed = resolve_config("deep")
    renamed["trainer"]["callbacks"][0]["class_path"] = "fmnist.training.weight_averaging.SomethingElse"
    assert fingerprint(training_recipe(renamed)) != fingerprint(training_recipe(cfg))


def test_transfer_carries_its_mnist_base_recipe() -> None:
    cfg = resolve_config("transfer")
    plain = training_recipe(cfg)
    with_base = training_recipe(cfg, pretrain=resolve_config("scratch", config="configs/mnist_pretrain.yaml"))
    assert "pretrain.data.dataset" in with_base and with_base["pretrain.data.dataset"] == "mnist"
    assert fingerprint(plain) != fingerprint(with_base)
