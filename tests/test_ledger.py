"""The results ledger: records are strict, stable JSON, one file per piece, safe to write from many processes."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from fmnist.errors import FmnistError
from fmnist.ledger import (
    fingerprint,
    make_record,
    read_record,
    read_records,
    record_path,
    rounded,
    write_record,
)


def _record(experiment: str = "deep", item: str = "s42", **metrics: float) -> dict:
    return make_record(kind="train", budget="full", experiment=experiment, item=item, device="cpu",
                       recipe={"model.lr": 0.001, "data.batch_size": 64}, metrics=metrics or {"test_acc": 0.9},
                       provenance={"git_commit": "abc1234"}, seed=42)


def test_a_record_lives_at_budget_experiment_item_device(tmp_path: Path) -> None:
    path = write_record(tmp_path, _record())
    assert path == tmp_path / "full" / "deep" / "s42.cpu.json" == record_path(tmp_path, "full", "deep", "s42", "cpu")


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "", ".hidden", "x y"])
def test_names_are_one_plain_path_component(tmp_path: Path, bad: str) -> None:
    with pytest.raises(FmnistError, match="must be one plain name"):
        record_path(tmp_path, "full", bad, "s42", "cpu")


def test_records_are_sorted_rounded_and_never_hold_nan(tmp_path: Path) -> None:
    path = write_record(tmp_path, _record(test_acc=0.8553000092506409, test_loss=float("nan"),
                                          val_loss=float("inf")))
    text = path.read_text()
    loaded = json.loads(text)  # strict JSON: Python's parser would accept NaN, so look at the text too
    assert "NaN" not in text and "Infinity" not in text
    assert loaded["metrics"] == {"test_acc": 0.8553, "test_loss": None, "val_loss": None}
    assert list(loaded) == sorted(loaded) and text.endswith("}\n")
    assert loaded["recipe"] == {"data.batch_size": 64, "model.lr": 0.001}


def test_rounding_keeps_six_significant_digits() -> None:
    assert rounded([0.123456789, 12345.6789, 1e-7 * 1.23456789, 3]) == [0.123457, 12345.7, 1.23457e-07, 3]


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    assert fingerprint({"a": 1, "b": [1.0, 2]}) == fingerprint({"b": [1.0, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2}) and len(fingerprint({})) == 16


def test_a_record_whose_fingerprint_is_not_its_recipes_is_refused(tmp_path: Path) -> None:
    record = {**_record(), "recipe_fingerprint": "0" * 16}
    with pytest.raises(ValueError, match="fingerprint must be the fingerprint of its recipe"):
        write_record(tmp_path, record)
    assert not (tmp_path / "full").exists()


@pytest.mark.parametrize("content, message", [("{not json", "is unreadable"), ('{"schema": 1}', "lacks kind")])
def test_a_damaged_record_is_one_sentence_naming_it(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "full" / "deep" / "s42.cpu.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(FmnistError, match=message) as info:
        read_records(tmp_path, "full")
    assert str(path) in str(info.value) and f"git checkout -- {path}" in str(info.value)


def test_rewriting_a_piece_replaces_its_record(tmp_path: Path) -> None:
    write_record(tmp_path, _record(test_acc=0.5))
    path = write_record(tmp_path, _record(test_acc=0.7))
    assert read_record(path)["metrics"]["test_acc"] == 0.7 and len(read_records(tmp_path)) == 1
    assert [p.name for p in path.parent.iterdir()] == ["s42.cpu.json"]  # no temporary file left behind


def _writer(ledger: str, worker: int, count: int) -> None:
    for i in range(count):
        write_record(Path(ledger), _record(item=f"w{worker}-{i}", test_acc=i / count))
        write_record(Path(ledger), _record(item="shared", test_acc=worker + i / count))  # the same piece, raced


def test_two_processes_writing_one_ledger_at_once_lose_nothing(tmp_path: Path) -> None:
    count = 40
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(tmp_path), worker, count)) for worker in (0, 1)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0, 0]
    records = read_records(tmp_path, "full")  # every file is a whole, valid record
    items = {r["item"] for r in records}
    assert items == {f"w{w}-{i}" for w in (0, 1) for i in range(count)} | {"shared"}
    assert not list(tmp_path.rglob(".*.tmp"))
    shared = next(r for r in records if r["item"] == "shared")["metrics"]["test_acc"]
    assert shared in {round(w + i / count, 6) for w in (0, 1) for i in range(count)}  # one writer's, whole
