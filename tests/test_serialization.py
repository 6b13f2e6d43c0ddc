"""fmnist.serialization, unit by unit: the size cap on text files, the one sentence per unreadable checkpoint, and
what keeps a state dict from loading. (Payload checkpoints and estimators through the commands:
tests/test_untrusted_files.py.) Expected values are worked by hand or made by torch and pickle themselves."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

from fmnist.errors import FmnistError
from fmnist.serialization import (
    MAX_TEXT_BYTES,
    checkpoint_error,
    read_checkpoint,
    read_json_capped,
    read_text_capped,
    weights_mismatch,
)


def sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes that the file system need not store (nothing is written)."""
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def test_the_text_cap_is_16_mib_as_the_docs_say() -> None:
    """docs/cli.md: "any metrics.json over 16 MiB" is refused before it is read."""
    assert MAX_TEXT_BYTES == 16 * 1024 * 1024
    assert "metrics.json` over 16 MiB" in (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()


def test_a_text_file_of_exactly_the_cap_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    exact, over = tmp_path / "exact.json", tmp_path / "over.json"
    exact.write_bytes(b"7" * 10)
    over.write_bytes(b"7" * 11)
    assert read_text_capped(exact, max_bytes=10) == "7" * 10
    assert read_json_capped(exact, max_bytes=10) == 7777777777
    with pytest.raises(FmnistError) as info:
        read_text_capped(over, max_bytes=10)
    assert str(info.value) == (f"{over} is 11 bytes, over the 10 bytes a file of this kind can be; it was not "
                               f"written by fmnist (or it was damaged): pass the right file.")


def test_sizes_in_the_refusal_are_in_the_unit_a_person_reads(tmp_path: Path) -> None:
    big = sparse_file(tmp_path / "big.json", 3 * 2**20 + 1)
    with pytest.raises(FmnistError, match=r"is 3\.0 MiB, over the 2 KiB a file"):
        read_text_capped(big, max_bytes=2048)
    with pytest.raises(FmnistError, match=r"is 3\.0 MiB, over the 1\.0 MiB a file"):
        read_text_capped(big, max_bytes=2**20)


def test_a_file_that_grows_after_its_size_was_read_is_still_capped(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """stat said small, the bytes are more: at most max_bytes + 1 are read, and the file is refused."""
    path = tmp_path / "growing.json"
    path.write_bytes(b"1" * 50)
    real_stat = Path.stat
    monkeypatch.setattr(Path, "stat", lambda self, **kw: type("S", (), {"st_size": 5})() if self == path
                        else real_stat(self, **kw))
    with pytest.raises(FmnistError, match=r"is 11 bytes, over the 10 bytes"):
        read_text_capped(path, max_bytes=10)


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf{\"a\": 1}")
    assert read_json_capped(path) == {"a": 1}


def test_each_unreadable_checkpoint_gets_its_own_sentence(tmp_path: Path) -> None:
    path = tmp_path / "m.ckpt"
    found = checkpoint_error(path, pickle.UnpicklingError("Weights only load failed. Unsupported global: GLOBAL "
                                                          "os.system was not an allowed global"))
    assert str(found) == (f"refusing to load {path}: it holds Python objects beyond tensors and plain values (it "
                          f"asks for os.system), and loading those could run code; use a checkpoint written by "
                          f"fmnist's training or re-save the weights as a plain state dict.")
    garbage = checkpoint_error(path, pickle.UnpicklingError("invalid load key, 'x'."))
    assert str(garbage) == (f"{path} is not a readable checkpoint (not a torch.save file of tensors and plain "
                            f"values).")
    missing = checkpoint_error(path, FileNotFoundError(2, "No such file"))
    assert str(missing) == f"checkpoint {path} does not exist; pass a run folder or an existing .ckpt file."
    other = checkpoint_error(path, RuntimeError("PytorchStreamReader failed. The file is damaged.\nmore detail"))
    assert str(other) == f"{path} is not a readable checkpoint (RuntimeError: PytorchStreamReader failed)."
    empty = checkpoint_error(path, EOFError())
    assert str(empty) == f"{path} is not a readable checkpoint (EOFError: empty file)."


def test_read_checkpoint_returns_the_dictionary_and_refuses_anything_else(tmp_path: Path) -> None:
    good, bare, garbage = tmp_path / "good.ckpt", tmp_path / "bare.ckpt", tmp_path / "garbage.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, good)
    torch.save(torch.ones(3), bare)
    garbage.write_bytes(b"not a checkpoint at all")
    assert torch.equal(read_checkpoint(good)["state_dict"]["w"], torch.ones(2))
    with pytest.raises(FmnistError, match=r"is not a checkpoint dictionary \(found Tensor\)\.$"):
        read_checkpoint(bare)
    with pytest.raises(FmnistError, match=r"is not a readable checkpoint"):
        read_checkpoint(garbage)
    with pytest.raises(FmnistError, match=r"does not exist; pass a run folder"):
        read_checkpoint(tmp_path / "missing.ckpt")


def test_weights_mismatch_counts_missing_unexpected_and_reshaped_weights() -> None:
    expected = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "c": torch.zeros(1), "d": torch.zeros(5)}
    assert weights_mismatch(expected, dict(expected)) is None
    found = {"a": torch.zeros(3, 2), "b": torch.zeros(4), "x": torch.zeros(1), "y": 1, "z": torch.zeros(2)}
    assert weights_mismatch(expected, found) == ("2 missing (e.g. c, d); 3 unexpected (e.g. x, y); "
                                                 "1 other shapes (e.g. a (3, 2) vs (2, 3))")
    assert weights_mismatch(expected, {"a": torch.zeros(2, 3), "b": torch.zeros(4), "c": torch.zeros(1)}) == \
        "1 missing (e.g. d)"


def test_the_default_cap_takes_exactly_16_mib_and_refuses_one_byte_more(tmp_path: Path) -> None:
    """Through the function's own default (sparse files: nothing is written)."""
    exact, over = sparse_file(tmp_path / "exact.json", 16 * 2**20), sparse_file(tmp_path / "over.json", 16 * 2**20 + 1)
    assert len(read_text_capped(exact)) == 16 * 2**20
    with pytest.raises(FmnistError, match=r"is 16\.0 MiB, over the 16\.0 MiB a file"):
        read_text_capped(over)


@pytest.mark.parametrize(("cap", "size", "words"), [(24, 25, "25 bytes, over the 24 bytes"),
                                                     (1023, 1024, "1 KiB, over the 1023 bytes"),
                                                     (2**20 - 1, 2**20, "1.0 MiB, over the 1024 KiB")])
def test_sizes_switch_unit_at_one_kib_and_one_mib(tmp_path: Path, cap: int, size: int, words: str) -> None:
    path = sparse_file(tmp_path / "f.json", size)
    with pytest.raises(FmnistError, match=re.escape(f"is {words} a file")):
        read_text_capped(path, max_bytes=cap)
