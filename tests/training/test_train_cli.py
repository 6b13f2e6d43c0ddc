"""Training CLI: shorthand translation, every model through fit+test, metrics.json, seeds, resume, DDP, errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fmnist.commands.options.train import parse_shorthand
from fmnist.commands.shims import train_py as main
from fmnist.errors import FmnistError
from fmnist.evaluation.predict import evaluate
from fmnist.models import get_spec, list_models
from fmnist.serialization import read_checkpoint
from fmnist.training.api import gpu_settings, resolve_config

ROOT = Path(__file__).resolve().parents[2]
# Zalando's label table (github.com/zalandoresearch/fashion-mnist), in label order
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def tiny(data_dir: str, logdir: Path, *extra: str) -> list[str]:
    """Flags for a fast real run on the synthetic set: a few batches per epoch, 1 epoch unless overridden."""
    return ["--logdir", str(logdir), "--data.data_dir", data_dir, "--data.batch_size", "16", "--epochs", "1",
            "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches",
            "2", *QUIET, *extra]


def run_train(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """``train.py`` in a fresh process whose working directory is a scratch folder (never the repository)."""
    env = {**os.environ, "FMNIST_NO_DOWNLOAD": "1", "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory(prefix="fmnist-cwd-") as cwd:
        return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, env=env)


def metrics_of(logdir: Path, name: str, version: int = 0) -> dict:
    return json.loads((logdir / name / f"version_{version}" / "metrics.json").read_text())


# -- shorthand -> typed options -> one resolved config ---------------------------------------------------
def test_gpus_mapping() -> None:
    assert gpu_settings(None) == {"trainer.accelerator": "cpu", "trainer.devices": 1}
    assert gpu_settings(0) == {"trainer.accelerator": "cpu", "trainer.devices": 1}
    assert gpu_settings(1, available=1) == {"trainer.accelerator": "gpu", "trainer.devices": 1}
    assert gpu_settings(4, available=8) == {"trainer.accelerator": "gpu", "trainer.devices": 4,
                                            "trainer.strategy": "ddp"}
    with pytest.raises(FmnistError, match=r"--gpus 2 asks for 2 GPU\(s\) but this machine has 1"):
        gpu_settings(2, available=1)


def test_shorthand_resolves_to_one_typed_config() -> None:
    options = parse_shorthand(["--model", "deep", "--gpus", "2", "--epochs", "7", "--optimizer", "sgd",
                               "--seed", "3", "--trainer.num_nodes", "2", "--data.augment.enabled=false",
                               "--model.class_weights", "{6: 2.0}"])
    assert (options.model, options.gpus, options.epochs, options.optimizer, options.seed) == ("deep", 2, 7, "sgd", 3)
    assert options.overrides == {"trainer.num_nodes": 2, "data.augment.enabled": False, "model.class_weights": {6: 2.0}}
    cfg = resolve_config(options.model, overrides=options.overrides, seed=options.seed, epochs=options.epochs,
                         gpus=options.gpus, optimizer=options.optimizer, available_gpus=2)
    deep_yaml = yaml.safe_load((ROOT / "configs" / "deep.yaml").read_text())
    assert cfg["model"]["model_name"] == "deep" and cfg["model"]["label_smoothing"] == deep_yaml["model"]["label_smoothing"]
    assert cfg["trainer"]["accelerator"] == "gpu" and cfg["trainer"]["devices"] == 2
    assert cfg["trainer"]["strategy"] == "ddp" and cfg["trainer"]["max_epochs"] == 7 and cfg["trainer"]["num_nodes"] == 2
    assert cfg["model"]["optimizer"] == "sgd" and cfg["model"]["lr"] == 0.01 and cfg["seed_everything"] == 3
    assert cfg["data"]["augment"]["enabled"] is False and cfg["model"]["class_weights"] == {6: 2.0}
    assert cfg["trainer"]["callbacks"] == deep_yaml["trainer"]["callbacks"]  # the recipe's callbacks are kept


def test_optimizer_shorthand_sets_that_optimizers_learning_rate_unless_given() -> None:
    assert resolve_config("scratch", optimizer="adam")["model"]["lr"] == 0.001
    assert resolve_config("scratch", optimizer="sgd", overrides={"model.lr": 0.05})["model"]["lr"] == 0.05


def test_logdir_and_name_without_a_logger_in_the_config_get_the_default_logger() -> None:
    cfg = resolve_config("lenet5", logdir="/tmp/x", name="mine", version="version_3")
    logger = cfg["trainer"]["logger"]
    assert logger["class_path"].endswith("TensorBoardLogger")
    assert logger["init_args"] == {"save_dir": "/tmp/x", "name": "mine", "version": "version_3"}


def test_logdir_with_the_logger_switched_off_still_holds_the_run_folder() -> None:
    """Without a logger to carry it, logdir becomes the trainer's root: never a silent ./lightning_logs."""
    cfg = resolve_config("lenet5", logdir="/tmp/x", overrides={"trainer.logger": False})
    assert cfg["trainer"]["logger"] is False and cfg["trainer"]["default_root_dir"] == "/tmp/x/lenet5"
    named = resolve_config("lenet5", logdir="/tmp/x", name="mine", overrides={"trainer.logger": False})
    assert named["trainer"]["default_root_dir"] == "/tmp/x/mine"
    kept = resolve_config("lenet5", logdir="/tmp/x", overrides={"trainer.logger": False,
                                                                 "trainer.default_root_dir": "/tmp/y"})
    assert kept["trainer"]["default_root_dir"] == "/tmp/y"


@pytest.mark.parametrize("argv, message", [
    (["--model", "vgg"], "Unknown model 'vgg'; choose one of"),
    (["--model", "deep", "--epochs", "x"], "--epochs takes an integer, got 'x'"),
    (["--model", "deep", "--epochs", "0"], "--epochs must be at least 1"),
    (["--model", "deep", "--fold", "1"], "--fold i needs --folds K"),
    (["--model"], "--model expected one argument"),
    (["--model", "deep", "stray"], "unexpected argument 'stray'"),
    (["--model", "deep", "--trainer.max_epochs"], "--trainer.max_epochs needs a value"),
])
def test_shorthand_errors(argv: list[str], message: str) -> None:
    with pytest.raises(FmnistError, match=re.escape(message)):
        parse_shorthand(argv)


def test_bad_optimizer_is_one_sentence() -> None:
    with pytest.raises(FmnistError, match="--optimizer must be one of adam, adamw, sgd"):
        resolve_config("deep", optimizer="rmsprop")


def test_list_models(capsys) -> None:
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert "deep" in out and "94,154" in out and "3x32x32" in out


# -- every model trains and tests through the CLI -----------------------------------------------------
@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_tests_and_reports_what_its_checkpoint_scores(name: str, synthetic_data_dir: str,
                                                                         tmp_path: Path) -> None:
    """Each model through ``train.py --model NAME``: its weights move, and metrics.json's test numbers are what
    its best checkpoint scores on all 100 synthetic test images when the evaluator loads it afresh."""
    args = ["--model", name, "--logdir", str(tmp_path), "--data.data_dir", synthetic_data_dir, "--data.batch_size",
            "8", "--epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2", *QUIET]
    assert main(args) == 0
    run = tmp_path / name / "version_0"
    metrics = metrics_of(tmp_path, name)
    assert metrics["model"] == get_spec(name).name and metrics["epochs"] == 1 and metrics["n_train"] == 510
    assert metrics["final_weight_fingerprint"] != metrics["initial_weight_fingerprint"]  # it trained
    assert Path(metrics["best_checkpoint"]) == run / "checkpoints" / "best.ckpt"
    predictions = evaluate(run, "fashion", "test", data_dir=synthetic_data_dir)
    predicted, labels = predictions.probs.argmax(axis=1), predictions.labels
    assert len(labels) == 100 and sorted(np.bincount(labels)) == [10] * 10
    assert metrics["test_acc"] == pytest.approx(float((predicted == labels).mean()), abs=1e-6)
    recall = {name: float((predicted[labels == k] == k).mean()) for k, name in enumerate(FASHION_CLASSES)}
    assert metrics["per_class_acc"] == pytest.approx(recall, abs=1e-6)
    if name == "transfer":  # the MNIST base was pretrained first, in the same command, and is kept frozen
        base = read_checkpoint(tmp_path / "mnist_pretrain" / "base.ckpt")["state_dict"]
        trained = read_checkpoint(run / "checkpoints" / "best.ckpt")["state_dict"]
        conv = [k for k in base if k.startswith("model.features.") and k.endswith("weight")]
        assert conv and all(torch.equal(base[k], trained[k]) for k in conv)


def test_metrics_json_names_the_commit_the_run_started_with(synthetic_data_dir: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits that land while a long run trains must not be credited with its result."""
    def head_now() -> str:  # what `git rev-parse HEAD` says: a new commit once the first epoch has ended
        return "landed-later" if any(tmp_path.rglob("last.ckpt")) else "started-at"

    monkeypatch.setattr("fmnist.training.lightning_cli.git_commit", head_now)
    assert main(["--model", "scratch", *tiny(synthetic_data_dir, tmp_path)]) == 0
    assert metrics_of(tmp_path, "scratch")["git_commit"] == "started-at"


def test_metrics_json_has_the_promised_fields(synthetic_data_dir: str, tmp_path: Path) -> None:
    assert main(["--model", "scratch", *tiny(synthetic_data_dir, tmp_path, "--epochs", "2")]) == 0
    run = tmp_path / "scratch" / "version_0"
    metrics = metrics_of(tmp_path, "scratch")
    for key in ("model", "test_acc", "test_macro_f1", "per_class_acc", "val_acc", "epochs", "best_epoch",
                "trainable_params", "seed", "wall_seconds", "seconds_per_epoch", "torch_version",
                "lightning_version"):
        assert metrics[key] is not None, key
    assert metrics["model"] == "scratch" and metrics["epochs"] == 2 and metrics["trainable_params"] == 225_034
    assert len(metrics["per_class_acc"]) == 10 and 0.0 <= metrics["test_acc"] <= 1.0
    assert 1 <= metrics["best_epoch"] <= metrics["epochs"] and metrics["seed"] == 42
    assert len(metrics["epoch_seconds"]) == metrics["epochs"]  # not the best checkpoint's shorter record
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents.*"))


def test_seed_makes_cpu_runs_repeatable(synthetic_data_dir: str, tmp_path: Path) -> None:
    for _ in range(2):
        assert main(["--model", "deep", "--seed", "7", *tiny(synthetic_data_dir, tmp_path)]) == 0
    first, second = metrics_of(tmp_path, "deep", 0), metrics_of(tmp_path, "deep", 1)
    for key in ("test_acc", "test_loss", "val_loss", "final_weight_fingerprint"):
        assert first[key] == second[key], key
    assert main(["--model", "deep", "--seed", "8", *tiny(synthetic_data_dir, tmp_path)]) == 0
    assert metrics_of(tmp_path, "deep", 2)["final_weight_fingerprint"] != first["final_weight_fingerprint"]


def test_resume_continues_the_same_run(synthetic_data_dir: str, tmp_path: Path) -> None:
    assert main(["--model", "scratch", *tiny(synthetic_data_dir, tmp_path)]) == 0
    assert metrics_of(tmp_path, "scratch")["epochs"] == 1
    assert main(["--model", "scratch", "--resume", *tiny(synthetic_data_dir, tmp_path, "--epochs", "3")]) == 0
    assert metrics_of(tmp_path, "scratch")["epochs"] == 3
    assert not (tmp_path / "scratch" / "version_1").exists()


def test_resume_without_a_previous_run_is_clear(synthetic_data_dir: str, tmp_path: Path, capsys) -> None:
    assert main(["--model", "scratch", "--resume", *tiny(synthetic_data_dir, tmp_path)]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_killed_run_resumes_to_the_same_epoch_count(synthetic_data_dir: str, tmp_path: Path) -> None:
    """SIGKILL a run mid-training (after its first last.ckpt), resume it, and finish all epochs."""
    args = ["--model", "scratch", *tiny(synthetic_data_dir, tmp_path, "--epochs", "4",
                                        "--trainer.limit_train_batches", "30", "--early_stopping.patience", "10")]
    env = {**os.environ, "FMNIST_NO_DOWNLOAD": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "scratch" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 600
    while not (last.exists() and last.stat().st_size > 0) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # let the first checkpoint's single write finish: the kill lands early in the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the first run was cut short: killed (not exited), no metrics.json, its checkpoint short of the 4 epochs
    assert proc.returncode == -signal.SIGKILL, f"the run ended by itself (exit {proc.returncode}) before the kill"
    assert last.exists(), "the run never saved last.ckpt"
    assert not (run / "metrics.json").exists()
    epochs_done = read_checkpoint(last)["epoch"] + 1  # Lightning stores the 0-based index of the finished epoch
    assert 1 <= epochs_done < 4, epochs_done
    assert main([*args, "--resume"]) == 0
    metrics = metrics_of(tmp_path, "scratch")
    assert metrics["epochs"] == 4 and metrics["resumes"] == 1
    assert not (tmp_path / "scratch" / "version_1").exists()


# -- full LightningCLI ---------------------------------------------------------------------------------
@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_config_builds_its_model(config: str, tmp_path: Path) -> None:
    from fmnist.training.lightning_cli import FmnistCLI

    extra = ["--model.model_kwargs", "{}"] if config == "transfer.yaml" else []  # no MNIST base needed to parse
    cli = FmnistCLI(args=["--config", str(ROOT / "configs" / config), "--trainer.logger", "false", *extra], run=False)
    assert cli.model.hparams.model_name == cli.config.model.model_name
    # the studies' batch 64, except recipes built around large batches (speedrun: 256)
    assert cli.datamodule.hparams.batch_size == (256 if config.startswith("speedrun") else 64)
    if get_spec(cli.config.model.model_name).source != "ours":  # the studies' recipe; ours trains a fixed schedule
        assert cli.config.early_stopping.patience == 3


def test_configured_callbacks_are_kept_beside_ours() -> None:
    """``trainer.callbacks`` from the YAML and from the command line reach the Trainer (they were once dropped)."""
    from lightning.pytorch.callbacks import DeviceStatsMonitor, EarlyStopping, EMAWeightAveraging

    from fmnist.training.callbacks import EpochTimer
    from fmnist.training.lightning_cli import FmnistCLI

    cli = FmnistCLI(args=["--config", str(ROOT / "configs" / "deep.yaml"), "--trainer.logger", "false",
                          "--trainer.callbacks+=lightning.pytorch.callbacks.DeviceStatsMonitor"], run=False)
    for kind in (EMAWeightAveraging, DeviceStatsMonitor, EarlyStopping, EpochTimer):
        assert any(isinstance(callback, kind) for callback in cli.trainer.callbacks), kind
    ema = next(c for c in cli.trainer.callbacks if isinstance(c, EMAWeightAveraging))
    assert ema.update_every_n_steps == 1


def test_print_config() -> None:
    result = run_train("fit", "--config", str(ROOT / "configs" / "deep.yaml"), "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model_name: deep" in result.stdout and "early_stopping:" in result.stdout


def test_full_cli_fit_then_tests_best_checkpoint(synthetic_data_dir: str, tmp_path: Path) -> None:
    result = run_train("fit", "--config", str(ROOT / "configs" / "resnet.yaml"), "--data.data_dir", synthetic_data_dir,
                       "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.max_epochs", "1",
                       "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
                       "--trainer.limit_test_batches", "1", *QUIET)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path, "resnet")
    assert metrics["trainable_params"] == 37_898 and metrics["best_checkpoint"].endswith("best.ckpt")


@pytest.mark.parametrize("args, message", [
    (["--model", "vgg"], "Unknown model 'vgg'; choose one of: "),
    # each case is a fresh train.py process (seconds of imports): one runs by default, the rest with -m slow
    pytest.param(["--model", "deep", "--gpus", "64"], "asks for 64 GPU(s) but this machine has", marks=pytest.mark.slow),
    pytest.param(["--model", "deep", "--epochs", "ten"], "--epochs takes an integer", marks=pytest.mark.slow),
    pytest.param(["fit", "--model.model_name", "vgg"], "Unknown model 'vgg'", marks=pytest.mark.slow),
])
def test_user_mistakes_end_in_one_clear_line(args: list[str], message: str) -> None:
    result = run_train(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bad_config_key_lists_valid_choices() -> None:
    result = run_train("fit", "--model.optimiser", "sgd")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "optimiser" in result.stderr


# -- DDP on CPU ----------------------------------------------------------------------------------------
WHOLE_EVAL = ("--trainer.limit_val_batches", "1.0", "--trainer.limit_test_batches", "1.0")


def assert_scores_are_its_checkpoints(run: Path, metrics: dict, data_dir: str) -> None:
    """Two ranks each scored half of the validation and test images; gathered, their accuracy is the one a single
    process gets from the best checkpoint on all of them (90 validation, 100 test images)."""
    for split, key, n in (("val", "val_acc", 90), ("test", "test_acc", 100)):
        predictions = evaluate(run, "fashion", split, data_dir=data_dir)
        assert len(predictions.labels) == n
        accuracy = float((predictions.probs.argmax(axis=1) == predictions.labels).mean())
        assert metrics[key] == pytest.approx(accuracy, abs=1e-6), split

def test_ddp_on_cpu_with_two_processes(synthetic_data_dir: str, tmp_path: Path) -> None:
    result = run_train("--model", "scratch", *tiny(synthetic_data_dir, tmp_path, *WHOLE_EVAL),
                       "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                       timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path, "scratch")
    assert metrics["world_size"] == 2
    assert_scores_are_its_checkpoints(tmp_path / "scratch" / "version_0", metrics, synthetic_data_dir)


@pytest.mark.slow  # DDP itself runs by default (test_ddp_on_cpu_with_two_processes); this adds the transfer base on top
def test_ddp_transfer_pretrains_its_base_then_trains_on_it(synthetic_data_dir: str, tmp_path: Path) -> None:
    """Two runs in one process group: rank 0 writes the MNIST base, both ranks meet at a barrier, then read it.

    The group must outlive the first run: ended there, the barrier had nothing to wait on and rank 1 could
    build `transfer` before its base existed.
    """
    result = run_train("--model", "transfer", *tiny(synthetic_data_dir, tmp_path, *WHOLE_EVAL),
                       "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                       timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "mnist_pretrain").is_dir()
    metrics = metrics_of(tmp_path, "transfer")
    assert metrics["world_size"] == 2
    assert_scores_are_its_checkpoints(tmp_path / "transfer" / "version_0", metrics, synthetic_data_dir)


def test_appended_callbacks_join_the_configs_own() -> None:
    """``--trainer.callbacks+=X`` (twice) adds to configs/deep.yaml's EMA callback instead of replacing it."""
    options = parse_shorthand(["--model", "deep", "--trainer.callbacks+=a.First", "--trainer.callbacks+=b.Second"])
    assert options.overrides == {"trainer.callbacks+": ["a.First", "b.Second"]}
    cfg = resolve_config(options.model, overrides=options.overrides)
    paths = [c["class_path"] for c in cfg["trainer"]["callbacks"]]
    assert paths == ["fmnist.training.weight_averaging.BatchNormEMA", "a.First", "b.Second"]
