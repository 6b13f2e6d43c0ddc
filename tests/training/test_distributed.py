"""The process group is ended in order after a finished run (gloo aborted rank 0 at exit otherwise)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch.distributed as dist

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
    end_process_group(None)
    assert not dist.is_initialized()


def test_a_finished_run_destroys_its_process_group(one_rank_group: None) -> None:
    end_process_group(SimpleNamespace(interrupted=False))
    assert not dist.is_initialized()


def test_an_interrupted_run_leaves_the_group_alone(one_rank_group: None) -> None:
    """A stopped rank never reaches the barrier: waiting there would hang the others."""
    end_process_group(SimpleNamespace(interrupted=True))
    assert dist.is_initialized()
