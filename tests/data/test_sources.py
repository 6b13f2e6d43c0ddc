"""Where data comes from: search order, clear failures when it is missing, loading, ``evaluate.py stats``."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_synthetic_dataset

from fmnist.data import sources
from fmnist.data.sources import (
    DEBIAN_PACKAGE,
    ENV_VAR,
    NO_DOWNLOAD_ENV_VAR,
    SYSTEM_FASHION_DIR,
    candidate_dirs,
    dataset_info,
    find_raw_dir,
    load_dataset,
)
from fmnist.errors import DataNotFoundError, FmnistError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd = an empty tmp dir, no $FMNIST_DATA_DIR, no system copy: nothing is found unless a test writes it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setitem(sources.DATASETS, "fashion", dataclasses.replace(sources.DATASETS["fashion"],
                                                                         system_dir=tmp_path / "no-system-copy"))
    return tmp_path


def tiny(root: Path, dataset: str = "fashion", seed: int = 0, gz: bool = False) -> Path:
    return write_synthetic_dataset(root, dataset, n_train=20, n_test=10, seed=seed, gz=gz)


# -- search order ----------------------------------------------------------------------------------
def test_explicit_dir_beats_env_beats_cwd_data(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env, local = tiny(isolated / "explicit"), tiny(isolated / "env"), tiny(isolated / "data")
    monkeypatch.setenv(ENV_VAR, str(isolated / "env"))
    assert find_raw_dir("fashion", isolated / "explicit", download=False) == explicit
    assert find_raw_dir("fashion", download=False) == env
    monkeypatch.delenv(ENV_VAR)
    assert find_raw_dir("fashion", download=False).resolve() == local.resolve()


def test_env_root_without_this_dataset_is_passed_over_and_gz_counts(isolated: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    env = tiny(isolated / "env", dataset="mnist", gz=True)  # .gz files count
    local = tiny(isolated / "data")
    monkeypatch.setenv(ENV_VAR, str(isolated / "env"))  # holds MNIST only, like ../shared/data
    assert find_raw_dir("mnist", download=False) == env
    assert find_raw_dir("fashion", download=False).resolve() == local.resolve()


def test_candidate_dirs_order_and_system_copy_only_for_fashion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert candidate_dirs("fashion", tmp_path / "x") == [tmp_path / "x" / "FashionMNIST" / "raw"]  # the only place
    assert candidate_dirs("fashion") == [
        tmp_path / "env" / "FashionMNIST" / "raw",
        Path("data") / "FashionMNIST" / "raw",
        SYSTEM_FASHION_DIR,
    ]
    monkeypatch.delenv(ENV_VAR)
    assert candidate_dirs("mnist") == [Path("data") / "MNIST" / "raw"]


def test_system_copy_is_the_fallback_for_fashion(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flat = isolated / "usr-share-datasets-fashion-mnist"
    for path in tiny(isolated / "staging", gz=True).iterdir():
        flat.mkdir(exist_ok=True)
        path.rename(flat / path.name)
    monkeypatch.setitem(sources.DATASETS, "fashion", dataclasses.replace(sources.DATASETS["fashion"], system_dir=flat))
    assert find_raw_dir("fashion", download=False) == flat
    with pytest.raises(DataNotFoundError):
        find_raw_dir("mnist", download=False)


# -- missing data ----------------------------------------------------------------------------------
def test_missing_fashion_message_is_actionable(isolated: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        find_raw_dir("fashion", download=False)
    message = str(info.value)
    assert "$FMNIST_DATA_DIR" in message
    assert "<root>/FashionMNIST/raw/" in message
    assert DEBIAN_PACKAGE == "dataset-fashion-mnist" and f"apt-get install -y {DEBIAN_PACKAGE}" in message
    assert "train-images-idx3-ubyte[.gz]" in message and "t10k-labels-idx1-ubyte[.gz]" in message
    assert str(isolated / "data" / "FashionMNIST" / "raw") in message  # says where it looked, absolute
    assert "downloading is off" in message
    assert isinstance(info.value, FmnistError) and isinstance(info.value, FileNotFoundError)


def test_missing_mnist_message(isolated: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        find_raw_dir("mnist", download=False)
    message = str(info.value)
    assert "<root>/MNIST/raw/" in message and "$FMNIST_DATA_DIR" in message
    assert DEBIAN_PACKAGE not in message  # Debian packages only Fashion-MNIST


def test_no_download_env_var_turns_downloads_off(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(sources, "_download", no_network)
    monkeypatch.setenv(NO_DOWNLOAD_ENV_VAR, "1")
    with pytest.raises(DataNotFoundError, match=r"downloading is off \(\$FMNIST_NO_DOWNLOAD\)"):
        find_raw_dir("fashion")


def test_a_process_started_by_a_test_never_downloads(tmp_path: Path) -> None:
    """conftest's promise, checked where it matters: a fresh process (train.py and the sweep's workers are ones)
    that looks for a dataset it lacks is refused the download instead of reaching the network."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    code = ("from fmnist.data.sources import find_raw_dir\n"
            "try:\n    find_raw_dir('mnist')\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("DataNotFoundError MNIST not found") and "downloading is off" in result.stdout
    assert list(tmp_path.iterdir()) == []  # no ./data created for a download


def test_failed_download_says_so(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def offline(dataset: str, root: Path) -> None:
        calls.append(root)
        raise OSError("network unreachable")

    monkeypatch.setattr(sources, "_download", offline)
    with pytest.raises(DataNotFoundError, match=r"MNIST not found and the download failed \(are you offline\? "
                                                r"network unreachable\)"):
        find_raw_dir("mnist", download=True)
    assert calls == [Path("data")]
    (isolated / "dl").mkdir()
    with pytest.raises(DataNotFoundError, match=r"data_dir .*dl has no MNIST/raw/ folder and the download failed "
                                                r"\(are you offline\? network unreachable\)"):
        find_raw_dir("mnist", isolated / "dl", download=True)
    assert calls[-1] == isolated / "dl"


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(FmnistError, match=r"Unknown dataset 'kmnist'; choose one of: fashion, mnist"):
        dataset_info("kmnist")
    with pytest.raises(FmnistError, match="fashion, mnist"):
        find_raw_dir("cifar10", download=False)


# -- loading ---------------------------------------------------------------------------------------
def test_load_dataset_dtypes_and_shapes(synthetic_data_dir: str) -> None:
    for name in ("fashion", "mnist"):
        data = load_dataset(name, synthetic_data_dir)
        assert data.name == name
        assert data.train_images.dtype == torch.uint8 and data.train_images.shape == (600, 28, 28)
        assert data.test_images.dtype == torch.uint8 and data.test_images.shape == (100, 28, 28)
        assert data.train_labels.dtype == torch.int64 and data.train_labels.shape == (600,)
        assert data.test_labels.dtype == torch.int64 and data.test_labels.shape == (100,)
        assert torch.bincount(data.train_labels).tolist() == [60] * 10
        assert data.source == Path(synthetic_data_dir).resolve() / dataset_info(name).folder / "raw"
        assert len(data.class_names) == 10
        images, labels = data.split("test")
        assert images is data.test_images and labels is data.test_labels
    assert load_dataset("fashion", synthetic_data_dir).class_names[9] == "Ankle boot"
    assert load_dataset("mnist", synthetic_data_dir).class_names[9] == "9"
    with pytest.raises(FmnistError, match="Unknown split 'val'"):
        load_dataset("fashion", synthetic_data_dir).split("val")


def test_load_dataset_reads_gz(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, "mnist", n_train=30, n_test=10, seed=3, gz=True)
    data = load_dataset("mnist", tmp_path)
    assert data.train_images.shape == (30, 28, 28) and data.test_labels.shape == (10,)
    assert data.source.name == "raw" and any(p.suffix == ".gz" for p in data.source.iterdir())


def test_corrupt_file_surfaces_as_idx_error(tmp_path: Path) -> None:
    raw = write_synthetic_dataset(tmp_path, "fashion", n_train=20, n_test=10)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(FmnistError, match="t10k-labels-idx1-ubyte: file is truncated"):
        load_dataset("fashion", tmp_path)


# -- python evaluate.py stats --------------------------------------------------------------------------
def run_stats(*args: str, cwd: Path, env_data_dir: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env.update({NO_DOWNLOAD_ENV_VAR: "1", "COLUMNS": "200", "PYTHONWARNINGS": "ignore"})
    if env_data_dir:
        env[ENV_VAR] = env_data_dir
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "stats", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd, env=env)


def test_stats_cli_prints_counts(synthetic_data_dir: str, tmp_path: Path) -> None:
    result = run_stats("--data-dir", synthetic_data_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "fashion" in out and "mnist" in out
    assert out.count("600") >= 2 and out.count("100") >= 2  # train/test images of both datasets
    assert "60 each" in out and "10 each" in out
    assert "Ankle boot" in out


def test_stats_cli_without_data_is_one_clear_line(tmp_path: Path) -> None:
    result = run_stats("--dataset", "mnist", cwd=tmp_path)  # empty cwd, no $FMNIST_DATA_DIR, downloads off
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: MNIST not found") and "$FMNIST_DATA_DIR" in lines[0]
