"""Keeping freed CPU memory: the glibc settings and the Classifier's switch.

Their effect on page faults is measured by ``benchmarks/page_faults.py`` (a count that depends on the
machine's load is no test).
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from fmnist.training import cpu_tuning as cpu_memory
from fmnist.training.module import Classifier


class FakeLibc:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


@pytest.fixture
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_memory, "_retained", False)


def test_sets_all_three_thresholds_once(fresh_state: None) -> None:
    libc = FakeLibc()
    assert cpu_memory.retain_freed_memory(libc) is True
    assert libc.calls == [
        (cpu_memory.M_MMAP_THRESHOLD, 32 * 1024 * 1024),
        (cpu_memory.M_TRIM_THRESHOLD, 1024 * 1024 * 1024),
        (cpu_memory.M_TOP_PAD, 64 * 1024 * 1024),
    ]
    assert cpu_memory.is_retaining()
    assert cpu_memory.retain_freed_memory(libc) is True
    assert len(libc.calls) == 3  # idempotent: nothing set twice


def test_a_refused_setting_is_reported(fresh_state: None) -> None:
    assert cpu_memory.retain_freed_memory(FakeLibc(answer=0)) is False
    assert not cpu_memory.is_retaining()


@pytest.mark.parametrize("enabled", [True, False])
def test_classifier_switches_it_on_for_cpu_runs(monkeypatch: pytest.MonkeyPatch, enabled: bool) -> None:
    calls: list[bool] = []
    monkeypatch.setattr("fmnist.training.module.retain_freed_memory", lambda: calls.append(True) or True)
    module = Classifier("deep", retain_cpu_memory=enabled)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    module.trainer = trainer
    module.setup("validate")
    assert calls == ([True] if enabled else [])
    assert module.channels_last  # the other CPU default, resolved in the same hook
    with torch.no_grad():
        assert module(torch.rand(2, 1, 28, 28)).shape == (2, 10)
