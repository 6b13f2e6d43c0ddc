"""Speed records: time to accuracy and the Keras ratio, in the ledger and on README, stale when the recipe moved."""

from __future__ import annotations

from pathlib import Path

from fmnist.ledger import make_record, read_records, write_record
from fmnist.reproduce.readme import speed_lines
from fmnist.reproduce.speed import (
    KERAS_GOAL,
    is_current,
    keras_ratio_record,
    machine_tag,
    speed_records,
    time_to_accuracy_record,
)

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "speedrun.yaml")


def _timed(seed: int, acc: float, seconds: float, **kwargs) -> dict:
    return time_to_accuracy_record(
        name="speedrun", config=CONFIG, seed=seed, target=0.91, train_on_validation=False, overrides=None,
        metrics={"test_acc": acc, "process_seconds": seconds, "loop_seconds": seconds - 8}, device="cpu",
        device_name="test box", command="python benchmarks/time_to_accuracy.py", run_metrics={"git_commit": "abc1234"},
        **kwargs)


def test_timed_runs_make_one_row_with_mean_std_and_the_verdict(tmp_path: Path) -> None:
    for seed, acc, seconds in ((42, 0.9150, 20.0), (43, 0.9140, 22.0)):
        write_record(tmp_path, _timed(seed, acc, seconds))
    current, stale = speed_records(tmp_path)
    assert len(current) == 2 and stale == []
    row = next(line for line in speed_lines(current, stale) if line.startswith("| `speedrun`"))
    assert row == "| `speedrun` | 91.00% | 91.45% ± 0.07 | 21.0 ± 1.4 | 2 | yes | cpu, test box | abc1234 |"


def test_the_machine_tag_names_the_cpu_and_precision() -> None:
    assert machine_tag("2 CPU cores (Intel(R) Xeon(R) Processor)", "bf16-mixed") == "intel-xeon-processor-bf16-mixed"
    assert machine_tag("NVIDIA H100 80GB HBM3", "bf16-mixed") == "nvidia-h100-80gb-hbm3-bf16-mixed"


def test_two_machines_and_a_warm_server_make_rows_of_their_own(tmp_path: Path) -> None:
    for seed, name, precision, warm, seconds in ((42, "2 CPU cores (AMD EPYC)", "32-true", False, 50.0),
                                                 (42, "2 CPU cores (Intel Xeon)", "bf16-mixed", False, 20.0),
                                                 (43, "2 CPU cores (Intel Xeon)", "bf16-mixed", False, 22.0),
                                                 (42, "2 CPU cores (Intel Xeon)", "bf16-mixed", True, 12.0)):
        write_record(tmp_path, time_to_accuracy_record(
            name="speedrun", config=CONFIG, seed=seed, target=0.91, train_on_validation=True, overrides=None,
            metrics={"test_acc": 0.915, "process_seconds": seconds}, device="cpu", device_name=name, command="x",
            run_metrics={"git_commit": "abc1234", "precision": precision}, warm_server=warm))
    assert sorted(p.name for p in (tmp_path / "speed" / "speedrun").iterdir()) == [
        "s42-all-amd-epyc-32-true.cpu.json", "s42-all-intel-xeon-bf16-mixed.cpu.json",
        "s42-all-warm-intel-xeon-bf16-mixed.cpu.json", "s43-all-intel-xeon-bf16-mixed.cpu.json"]
    current, stale = speed_records(tmp_path)
    assert len(current) == 4 and stale == []
    rows = [line for line in speed_lines(current, stale) if line.startswith("| `speedrun")]
    assert "| `speedrun (all 60,000 images)` | 91.00% | 91.50% | 50.0 | 1 | yes | cpu, 2 CPU cores (AMD EPYC), 32-true |" \
        in "\n".join(rows)
    assert "| 21.0 ± 1.4 | 2 | yes | cpu, 2 CPU cores (Intel Xeon), bf16-mixed |" in "\n".join(rows)
    assert "| `speedrun (all 60,000 images), warm server` | 91.00% | 91.50% | 12.0 | 1 |" in "\n".join(rows)


def test_a_timed_run_of_another_recipe_is_stale(tmp_path: Path) -> None:
    record = _timed(42, 0.92, 19.0)
    moved = make_record(**{k: record[k] for k in ("kind", "budget", "experiment", "item", "device", "metrics",
                                                  "provenance")},
                        recipe={**record["recipe"], "model.lr": 0.9}, seed=42, config=CONFIG, overrides={})
    assert is_current(record) and not is_current(moved)
    write_record(tmp_path, moved)
    current, stale = speed_records(tmp_path)
    assert current == [] and len(stale) == 1
    assert speed_lines(current, stale) == []  # nothing current to show


def test_the_keras_ratio_is_the_median_of_its_pairs_and_says_whether_the_goal_holds(tmp_path: Path) -> None:
    pairs = [{"ours": 6.0, "keras": 18.0, "ratio": 6 / 18}, {"ours": 7.0, "keras": 17.5, "ratio": 0.4},
             {"ours": 6.5, "keras": 18.5, "ratio": 6.5 / 18.5}]
    write_record(tmp_path, keras_ratio_record(day="2026-12-07", model="deep", batch_size=64, precision="32-true",
                                              epochs=3, pairs=pairs, device="cpu", device_name="test box",
                                              command="python benchmarks/epoch_time.py",
                                              keras_versions={"tensorflow": "2.21.0"}))
    (record,) = read_records(tmp_path, "speed")
    assert record["metrics"]["median_ratio"] == round(6.5 / 18.5, 6) and record["metrics"]["goal"] == KERAS_GOAL
    lines = speed_lines(*speed_records(tmp_path))
    assert any(line.startswith("Against the studies' Keras code (2026-12-07, test box, `deep`") for line in lines)
    assert any("ratio **0.35** (median of the pairs 0.33, 0.40, 0.35; goal ≤ 0.35 on two days: not reached this day)"
               in line for line in lines)  # 0.3514 > 0.35
