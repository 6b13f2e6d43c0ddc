"""Strict data loading: a path the user gave is used or refused (never silently replaced), every header is
checked, a failed download says why, and every load records which files it used (issue 18, item 5)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import pwd
import re
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import skip_or_fail, write_synthetic_dataset

from fmnist.data import sources
from fmnist.data.datamodule import ImageDataModule
from fmnist.data.idx import read_idx, write_idx
from fmnist.data.sources import (
    ENV_VAR,
    SPLIT_FILES,
    DatasetInfo,
    find_raw_dir,
    load_dataset,
    locate,
    register_dataset,
    unregister_dataset,
)
from fmnist.errors import DataNotFoundError, IDXError

ALL_STEMS = [stem for pair in SPLIT_FILES.values() for stem in pair]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd = an empty tmp dir, no $FMNIST_DATA_DIR, and a complete (synthetic) system copy of Fashion-MNIST.

    Every test below would have "worked" before by falling through to that system copy.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    system.mkdir()
    for path in tiny(tmp_path / "staging", gz=True, seed=9).iterdir():
        path.rename(system / path.name)
    monkeypatch.setitem(sources.DATASETS, "fashion", dataclasses.replace(sources.DATASETS["fashion"],
                                                                         system_dir=system))
    return tmp_path


def tiny(root: Path, dataset: str = "fashion", seed: int = 0, gz: bool = False) -> Path:
    return write_synthetic_dataset(root, dataset, n_train=20, n_test=10, seed=seed, gz=gz)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- a path the user gave: used, or an error naming it -------------------------------------------------
def test_explicit_data_dir_that_does_not_exist_is_an_error(world: Path) -> None:
    with pytest.raises(DataNotFoundError, match=rf"data_dir {re.escape(str(world / 'nope'))} does not exist"):
        find_raw_dir("fashion", world / "nope", download=False)


def test_env_data_dir_that_does_not_exist_is_an_error(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(world / "nope"))
    with pytest.raises(DataNotFoundError, match=rf"\$FMNIST_DATA_DIR is {re.escape(str(world / 'nope'))}, which "
                                                r"does not exist.*or unset it"):
        find_raw_dir("fashion", download=False)


@pytest.mark.parametrize("gone", ALL_STEMS)
def test_explicit_root_missing_one_file_names_it_and_the_folder(world: Path, gone: str) -> None:
    raw = tiny(world / "mine")
    (raw / gone).unlink()
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("fashion", world / "mine", download=False)
    message = str(info.value)
    assert f"{raw} (found via data_dir) is incomplete: 1 of 4 files missing ({gone}[.gz])" in message
    assert [stem for stem in ALL_STEMS if stem in message] == [gone]  # only the missing one is named
    assert "usr-share" not in message


def test_env_root_missing_files_is_an_error_not_a_fall_through(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tiny(world / "env")
    for stem in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / stem).unlink()
    monkeypatch.setenv(ENV_VAR, str(world / "env"))
    with pytest.raises(DataNotFoundError, match=re.escape(
            f"{raw} (found via $FMNIST_DATA_DIR) is incomplete: 2 of 4 files missing (train-images-idx3-ubyte[.gz], "
            f"t10k-labels-idx1-ubyte[.gz]); add them there, or remove {raw.parent} so that the search goes on")):
        find_raw_dir("fashion", download=False)


def test_empty_dataset_folder_counts_as_incomplete(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (world / "env" / "FashionMNIST").mkdir(parents=True)  # files put in the wrong place, or a failed copy
    monkeypatch.setenv(ENV_VAR, str(world / "env"))
    with pytest.raises(DataNotFoundError, match=r"FashionMNIST/raw \(found via \$FMNIST_DATA_DIR\) is incomplete: "
                                                r"4 of 4 files missing"):
        find_raw_dir("fashion", download=False)


def test_incomplete_cwd_data_is_an_error(world: Path) -> None:
    raw = tiny(world / "data")
    (raw / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataNotFoundError, match=r"\(found via \./data\) is incomplete: 1 of 4 .*train-labels"):
        find_raw_dir("fashion", download=False)


def test_incomplete_system_copy_says_reinstall(world: Path) -> None:
    system = sources.DATASETS["fashion"].system_dir
    (system / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError, match=r"found via the system copy of dataset-fashion-mnist\) is incomplete"
                                                r".*t10k-images-idx3-ubyte\[\.gz\]\); reinstall it with `apt-get "
                                                r"install --reinstall -y dataset-fashion-mnist`"):
        find_raw_dir("fashion", download=False)


def test_explicit_root_without_the_dataset_is_an_error_when_downloads_are_off(world: Path) -> None:
    tiny(world / "digits", "mnist")  # a real root, but for MNIST only
    with pytest.raises(DataNotFoundError) as info:
        find_raw_dir("fashion", world / "digits", download=False)
    message = str(info.value)
    assert message.startswith(f"data_dir {world / 'digits'} has no FashionMNIST/raw/ folder and downloading is off")
    assert "is used when data_dir is unset" in message  # points at the system copy instead of taking it


def test_explicit_flat_folder_gets_a_layout_hint(world: Path) -> None:
    flat = sources.DATASETS["fashion"].system_dir  # Debian's flat folder, passed as if it were a root
    with pytest.raises(DataNotFoundError, match=r"It holds the IDX files directly: data_dir is the root above "
                                                r"FashionMNIST/raw/"):
        find_raw_dir("fashion", flat, download=False)


def test_env_root_without_this_dataset_continues_and_says_so(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI's case: $FMNIST_DATA_DIR holds MNIST only; Fashion-MNIST comes from the system copy, recorded."""
    tiny(world / "shared", "mnist")
    monkeypatch.setenv(ENV_VAR, str(world / "shared"))
    found = locate("fashion", download=False)
    system = sources.DATASETS["fashion"].system_dir
    assert found.folder == system and found.via == "the system copy of dataset-fashion-mnist"
    assert found.passed_over == (f"{world / 'shared' / 'FashionMNIST'} ($FMNIST_DATA_DIR): no such folder",
                                 f"{world / 'data' / 'FashionMNIST'} (./data): no such folder")
    record = load_dataset("fashion", download=False).provenance.as_dict()
    assert record["folder"] == str(system) and record["passed_over"] == list(found.passed_over)
    assert locate("mnist", download=False).via == "$FMNIST_DATA_DIR"


def test_the_real_ci_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """With CI's $FMNIST_DATA_DIR (MNIST, no FashionMNIST folder) Fashion-MNIST is Debian's copy, said so."""
    root = os.environ.get(ENV_VAR)
    system = sources.SYSTEM_FASHION_DIR
    if not root or (Path(root) / "FashionMNIST").exists() or not (Path(root) / "MNIST" / "raw").is_dir():
        pytest.skip("needs $FMNIST_DATA_DIR with MNIST/raw and no FashionMNIST folder (CI's ../shared/data)")
    if sources.missing_files(system):
        pytest.skip(f"needs Debian's dataset-fashion-mnist in {system}")
    found = locate("fashion", download=False)
    assert found.folder == system and found.passed_over[0].endswith("($FMNIST_DATA_DIR): no such folder")
    assert locate("mnist", download=False).folder == Path(root) / "MNIST" / "raw"


# -- headers -----------------------------------------------------------------------------------------
def rewrite_image_header(path: Path, height: int, width: int) -> None:
    raw = path.read_bytes()
    count = struct.unpack(">I", raw[4:8])[0]
    path.write_bytes(struct.pack(">IIII", 2051, count, height, width) + raw[16:])  # same byte count


@pytest.mark.parametrize(("stem", "dims"), [("t10k-images-idx3-ubyte", (56, 14)),
                                            ("train-images-idx3-ubyte", (14, 56)),
                                            ("t10k-images-idx3-ubyte", (32, 32))])
def test_image_dims_other_than_28x28_are_refused(tmp_path: Path, stem: str, dims: tuple[int, int]) -> None:
    raw = tiny(tmp_path)
    if dims == (32, 32):  # a genuinely different size, not only a different header
        labels = read_idx(raw / stem.replace("images-idx3", "labels-idx1"))
        write_idx(raw / stem, np.zeros((len(labels), 32, 32), dtype=np.uint8))
    else:
        rewrite_image_header(raw / stem, *dims)
    with pytest.raises(IDXError, match=re.escape(f"{raw / stem}: header says the images are {dims[0]}x{dims[1]}, "
                                                 f"expected 28x28")):
        load_dataset("fashion", tmp_path, download=False)


def test_the_datamodule_refuses_a_56x14_test_set(tmp_path: Path) -> None:
    raw = tiny(tmp_path)
    rewrite_image_header(raw / "t10k-images-idx3-ubyte", 56, 14)
    with pytest.raises(IDXError, match=r"t10k-images-idx3-ubyte: header says the images are 56x14"):
        ImageDataModule(data_dir=str(tmp_path)).setup("fit")


def test_truncated_file_is_one_sentence_with_its_path(tmp_path: Path) -> None:
    raw = tiny(tmp_path, gz=True)
    path = raw / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(IDXError, match=rf"^{re.escape(str(path))}: cannot be read \(.*\); re-download"):
        load_dataset("fashion", tmp_path, download=False)


def test_count_mismatch_magic_and_empty_split(tmp_path: Path) -> None:
    raw = tiny(tmp_path)
    labels = read_idx(raw / "t10k-labels-idx1-ubyte")
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[:-1])
    with pytest.raises(IDXError, match=r"t10k-images-idx3-ubyte holds 10 images but t10k-labels-idx1-ubyte holds 9"):
        load_dataset("fashion", tmp_path, download=False)
    write_idx(raw / "t10k-labels-idx1-ubyte", labels)
    (raw / "train-images-idx3-ubyte").write_bytes((raw / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(IDXError, match=r"train-images-idx3-ubyte: expected magic 2051, found 2049"):
        load_dataset("fashion", tmp_path, download=False)
    tiny(tmp_path)
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(0, np.uint8))
    with pytest.raises(IDXError, match=r"t10k-images-idx3-ubyte holds no images; the test split cannot be empty"):
        load_dataset("fashion", tmp_path, download=False)


@pytest.fixture
def three_classes(tmp_path: Path):
    """A registered dataset with 3 classes whose files carry the synthetic set's labels 0..9."""
    root = tmp_path / "root"
    tiny(root)
    (root / "FashionMNIST").rename(root / "Three")
    register_dataset(DatasetInfo("three", "Three", ("a", "b", "c")))
    yield root
    unregister_dataset("three")


def test_labels_are_checked_against_the_datasets_own_class_count(three_classes: Path) -> None:
    with pytest.raises(IDXError, match=r"train-labels-idx1-ubyte: label \d at index \d+ is outside 0\.\.2 "
                                       r"\(3 classes\)"):
        load_dataset("three", three_classes, download=False)


# -- provenance --------------------------------------------------------------------------------------
def test_provenance_names_every_file_with_its_sha256(tmp_path: Path) -> None:
    raw = tiny(tmp_path, gz=True)
    record = load_dataset("fashion", tmp_path, download=False).provenance.as_dict()
    assert record["dataset"] == "fashion" and record["folder"] == str(raw.resolve())
    assert record["via"] == "data_dir" and record["passed_over"] == []
    assert list(record["files"]) == ["train_images", "train_labels", "test_images", "test_labels"]
    for role, stem in zip(record["files"], ALL_STEMS, strict=True):
        entry = record["files"][role]
        path = raw.resolve() / f"{stem}.gz"
        assert entry == {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256(path)}
    json.dumps(record)  # ready for metrics.json


def test_hashes_are_computed_once_and_redone_when_a_file_changes(tmp_path: Path) -> None:
    raw = tiny(tmp_path, seed=4)
    sources._sha256.cache_clear()
    first = load_dataset("fashion", tmp_path, download=False)
    assert sources._sha256.cache_info().misses == 4
    again = load_dataset("fashion", tmp_path, download=False)
    assert sources._sha256.cache_info().misses == 4 and again.provenance == first.provenance
    assert again.train_images is first.train_images  # the arrays are cached too
    tiny(tmp_path, seed=5)  # new content for all four files, same sizes
    for i, path in enumerate(sorted(raw.iterdir())):  # and a new mtime even on a coarse clock
        os.utime(path, ns=(10**9 * (i + 1), 10**9 * (i + 1)))
    changed = load_dataset("fashion", tmp_path, download=False)
    assert sources._sha256.cache_info().misses == 8
    assert changed.provenance.files[0].sha256 == sha256(raw / "train-images-idx3-ubyte") != first.provenance.files[0].sha256
    assert not bool((changed.train_images == first.train_images).all())  # re-read, not the stale cache


def test_datamodule_exposes_the_data_source(synthetic_data_dir: str) -> None:
    dm = ImageDataModule(dataset="mnist", data_dir=synthetic_data_dir)
    assert dm.data_source is None
    dm.setup("fit")
    raw = Path(synthetic_data_dir).resolve() / "MNIST" / "raw"
    assert dm.data_source["dataset"] == "mnist" and dm.data_source["folder"] == str(raw)
    assert dm.data_source["files"]["test_labels"]["sha256"] == sha256(raw / "t10k-labels-idx1-ubyte")


def test_metrics_json_records_the_data_source(synthetic_data_dir: str, tmp_path: Path) -> None:
    from fmnist.commands.shims import train_py as main

    assert main(["--model", "scratch", "--logdir", str(tmp_path), "--data.data_dir", synthetic_data_dir,
                 "--data.batch_size", "16", "--epochs", "1", "--trainer.limit_train_batches", "2",
                 "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]) == 0
    metrics = json.loads((tmp_path / "scratch" / "version_0" / "metrics.json").read_text())
    raw = Path(synthetic_data_dir).resolve() / "FashionMNIST" / "raw"
    source = metrics["data_source"]
    assert source["dataset"] == "fashion" and source["folder"] == str(raw) and source["via"] == "data_dir"
    for role, stem in zip(source["files"], ALL_STEMS, strict=True):
        assert source["files"][role] == {"path": str(raw / stem), "bytes": (raw / stem).stat().st_size,
                                         "sha256": sha256(raw / stem)}


# -- downloads that fail say why ----------------------------------------------------------------------
class _Refusing:
    """Stands in for a torchvision dataset class: raises what creating its folder raised."""

    error: OSError

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        raise self.error


@pytest.mark.parametrize(("code", "words"), [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system")])
def test_read_only_data_dir_is_not_called_offline(world: Path, monkeypatch: pytest.MonkeyPatch, code: int,
                                                  words: str) -> None:
    import torchvision.datasets

    root = world / "ro"
    root.mkdir()
    refusing = type("Refusing", (_Refusing,), {"error": OSError(code, os.strerror(code), str(root / "MNIST"))})
    monkeypatch.setattr(torchvision.datasets, "MNIST", refusing)
    with pytest.raises(DataNotFoundError) as info:
        find_raw_dir("mnist", root, download=True)
    message = str(info.value)
    assert f"it cannot be downloaded there: {words} on {root / 'MNIST'}" in message
    assert "offline" not in message


def test_offline_download_says_offline_with_the_reason_and_leaves_no_empty_folder(
        world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(self, root: str, train: bool = True, download: bool = False) -> None:
        (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)  # as torchvision does first
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://example/, got:\n"
                           "<urlopen error [Errno -2] Name or service not known>\n")

    monkeypatch.setattr(torchvision.datasets, "MNIST", type("Offline", (), {"__init__": offline}))
    with pytest.raises(DataNotFoundError, match=r"the download failed \(are you offline\? <urlopen error \[Errno -2\] "
                                                r"Name or service not known>\)"):
        find_raw_dir("mnist", download=True)
    assert not (world / "data").exists()  # the next search says "not found", not "incomplete"


def _as_unprivileged_user(action: Callable[[], str]) -> str:
    """``action()`` in a forked child that dropped root for ``nobody``; what it returned (or raised), as text.

    A fork, not a new interpreter: the interpreter may live where ``nobody`` cannot execute it (/root/.pyenv).
    """
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        skip_or_fail("running as root and there is no `nobody` user to drop to")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            result = action()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which asserts on it
            result = f"{type(exc).__name__}: {exc}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read().decode()
    assert os.waitpid(pid, 0)[1] == 0
    return result


def test_really_read_only_data_dir(world: Path) -> None:
    """A folder the user may not write to, for real (no stand-in): as root, the check runs as ``nobody``."""
    shared = Path(tempfile.mkdtemp(prefix="fmnist-ro-"))  # not tmp_path: `nobody` must be able to reach it
    root = shared / "ro"
    try:
        shared.chmod(0o755)
        root.mkdir()
        root.chmod(0o555)

        def attempt() -> str:
            try:
                find_raw_dir("mnist", root, download=True)
            except DataNotFoundError as exc:
                return f"DataNotFoundError: {exc}"
            return "no error"

        got = _as_unprivileged_user(attempt) if os.geteuid() == 0 else attempt()
        assert got.startswith("DataNotFoundError: "), got
        assert f"cannot be downloaded there: permission denied on {root / 'MNIST'}" in got
        assert "offline" not in got and list(root.iterdir()) == []  # refused before any network, nothing written
    finally:
        root.chmod(0o755)
        shutil.rmtree(shared, ignore_errors=True)
