"""The process group is ended in order once a command's work is done (gloo aborted rank 0 at exit otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed as dist

from fmnist.commands import train as train_command
from fmnist.commands.shims import train_py
from fmnist.training.distributed import end_process_group


@pytest.fixture()
def one_rank_group(tmp_path: Path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_without_a_process_group_nothing_happens() -> None:
    assert not dist.is_initialized()
    end_process_group()
    assert not dist.is_initialized()


def test_end_process_group_destroys_the_group(one_rank_group: None) -> None:
    end_process_group()
    assert not dist.is_initialized()


def test_the_group_lives_until_the_commands_last_run_is_done(one_rank_group: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """One command may train several runs in one group (transfer's MNIST base, K folds): each run finds it alive,
    and only the finished command ends it."""
    alive_during_runs: list[bool] = []
    monkeypatch.setattr(train_command, "run_shorthand", lambda options: alive_during_runs.append(dist.is_initialized()))
    assert train_py(["--model", "transfer"]) == 0
    assert alive_during_runs == [True] and not dist.is_initialized()


def test_a_failed_command_leaves_the_group_alone(one_rank_group: None) -> None:
    """A rank that stopped with an error never reaches the barrier: waiting there would hang the others."""
    assert train_py(["--model", "no-such-model"]) == 2
    assert dist.is_initialized()
