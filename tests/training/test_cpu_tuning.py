"""Keeping freed CPU memory: the glibc settings, their effect on page faults, and the Classifier's switch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


@pytest.mark.skipif(cpu_memory._glibc() is None, reason="glibc only")
def test_training_steps_stop_page_faulting() -> None:
    """In a fresh process: ``deep``'s training step page-faults thousands of times, then (almost) never once the heap has grown."""
    script = textwrap.dedent("""
        import resource, torch
        from fmnist.training.cpu_tuning import retain_freed_memory
        from fmnist.models import create_model
        torch.set_num_threads(1)
        model = create_model("deep").to(memory_format=torch.channels_last)
        x = torch.rand(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (64,))
        def faults(steps=5):
            start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(steps):
                model.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x), y).backward()
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
        faults()
        before = sum(faults() for _ in range(3))
        assert retain_freed_memory()
        faults()
        # glibc's own adaptive thresholds make single windows noisy either way,
        # and the heap may still grow once more a few steps later (seen on CI):
        # compare three windows before with the quietest of four after.
        print(before, min(faults() for _ in range(4)))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    assert before > 1000, before
    assert after < before / 20, (before, after)


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
