"""Training CLI: shorthand translation, every model through fit+test, metrics.json, seeds, resume, DDP, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fmnist.cli import gpu_flags, main, translate_shorthand
from fmnist.errors import FmnistError
from fmnist.models import get_spec, list_models

ROOT = Path(__file__).resolve().parent.parent
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def tiny(data_dir: str, logdir: Path, *extra: str) -> list[str]:
    """Flags for a fast real run on the synthetic set: a few batches per epoch, 1 epoch unless overridden."""
    return ["--logdir", str(logdir), "--data.data_dir", data_dir, "--data.batch_size", "16", "--epochs", "1",
            "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches",
            "2", *QUIET, *extra]


def run_train(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "FMNIST_NO_DOWNLOAD": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def metrics_of(logdir: Path, name: str, version: int = 0) -> dict:
    return json.loads((logdir / name / f"version_{version}" / "metrics.json").read_text())


# -- shorthand translation -------------------------------------------------------------------------
def test_gpus_mapping() -> None:
    assert gpu_flags(None) == ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    assert gpu_flags(0) == ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    assert gpu_flags(1, available=1) == ["--trainer.accelerator", "gpu", "--trainer.devices", "1"]
    assert gpu_flags(4, available=8) == ["--trainer.accelerator", "gpu", "--trainer.devices", "4",
                                         "--trainer.strategy", "ddp"]
    with pytest.raises(FmnistError, match=r"--gpus 2 asks for 2 GPU\(s\) but this machine has 1"):
        gpu_flags(2, available=1)


def test_shorthand_translation_passes_flags_through() -> None:
    args, options = translate_shorthand(["--model", "deep", "--gpus", "2", "--epochs", "7", "--optimizer", "sgd",
                                         "--seed", "3", "--trainer.num_nodes", "2", "--data.augment=false"],
                                        available_gpus=2)
    assert args[0] == "fit" and args[1:3] == ["--config", str(ROOT / "configs" / "deep.yaml")]
    joined = " ".join(args)
    for expected in ("--model.model_name deep", "--trainer.accelerator gpu --trainer.devices 2",
                     "--trainer.strategy ddp", "--trainer.max_epochs 7", "--model.optimizer sgd",
                     "--seed_everything 3", "--trainer.num_nodes 2", "--model.lr 0.01"):
        assert expected in joined
    assert args[-1] == "--data.augment=false"  # pass-through flags come last, so they win
    assert options["model"] == "deep" and options["folds"] is None


def test_optimizer_shorthand_sets_that_optimizers_learning_rate_unless_given() -> None:
    args, _ = translate_shorthand(["--model", "scratch", "--optimizer", "adam"], available_gpus=0)
    assert "--model.lr 0.001" in " ".join(args)
    args, _ = translate_shorthand(["--model", "scratch", "--optimizer", "sgd", "--model.lr", "0.05"], available_gpus=0)
    assert args.count("--model.lr") == 1 and args[-2:] == ["--model.lr", "0.05"]


@pytest.mark.parametrize("argv, message", [
    (["--model", "vgg"], "Unknown model 'vgg'; choose one of"),
    (["--model", "deep", "--epochs", "x"], "--epochs takes an integer"),
    (["--model", "deep", "--epochs", "0"], "--epochs must be at least 1"),
    (["--model", "deep", "--optimizer", "rmsprop"], "--optimizer must be one of adam, adamw, sgd"),
    (["--model", "deep", "--fold", "1"], "--fold i needs --folds K"),
    (["--model"], "--model needs a value"),
])
def test_shorthand_errors(argv: list[str], message: str) -> None:
    with pytest.raises(FmnistError, match=message):
        translate_shorthand(argv, available_gpus=0)


def test_list_models(capsys) -> None:
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert "deep" in out and "94,154" in out and "3x32x32" in out


# -- every model trains and tests through the CLI -----------------------------------------------------
@pytest.mark.parametrize("name", list_models())
def test_every_model_fast_dev_run(name: str, synthetic_data_dir: str, tmp_path: Path) -> None:
    args = ["--model", name, "--logdir", str(tmp_path), "--data.data_dir", synthetic_data_dir,
            "--data.batch_size", "8", "--trainer.fast_dev_run", "true", *QUIET]
    assert main(args) == 0
    if name == "transfer":  # the MNIST base was pretrained first, in the same command
        assert (tmp_path / "mnist_pretrain" / "base.ckpt").is_file()


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
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "scratch" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 180
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "the run never saved last.ckpt"
    assert main([*args, "--resume"]) == 0
    metrics = metrics_of(tmp_path, "scratch")
    assert metrics["epochs"] == 4


# -- full LightningCLI ---------------------------------------------------------------------------------
@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_config_builds_its_model(config: str, tmp_path: Path) -> None:
    from fmnist.cli import FmnistCLI

    extra = ["--model.model_kwargs", "{}"] if config == "transfer.yaml" else []  # no MNIST base needed to parse
    cli = FmnistCLI(args=["--config", str(ROOT / "configs" / config), "--trainer.logger", "false", *extra], run=False)
    assert cli.model.hparams.model_name == cli.config.model.model_name
    assert cli.datamodule.hparams.batch_size == 64
    if get_spec(cli.config.model.model_name).source != "ours":  # the studies' recipe; ours trains a fixed schedule
        assert cli.config.early_stopping.patience == 3


def test_configured_callbacks_are_kept_beside_ours() -> None:
    """``trainer.callbacks`` from the YAML and from the command line reach the Trainer (they were once dropped)."""
    from lightning.pytorch.callbacks import DeviceStatsMonitor, EarlyStopping, EMAWeightAveraging

    from fmnist.callbacks import EpochTimer
    from fmnist.cli import FmnistCLI

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
    (["--model", "deep", "--gpus", "64"], "asks for 64 GPU(s) but this machine has"),
    (["--model", "deep", "--epochs", "ten"], "--epochs takes an integer"),
    (["fit", "--model.model_name", "vgg"], "Unknown model 'vgg'"),
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
def test_ddp_on_cpu_with_two_processes(synthetic_data_dir: str, tmp_path: Path) -> None:
    result = run_train("--model", "scratch", *tiny(synthetic_data_dir, tmp_path),
                       "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                       timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path, "scratch")
    assert metrics["world_size"] == 2 and metrics["val_acc"] is not None and metrics["test_acc"] is not None
