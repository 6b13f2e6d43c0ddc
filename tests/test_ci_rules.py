"""The suite's own rule for CI: there, a test that would skip for lack of data, a service or a browser fails.

Checked by running pytest on three tiny tests with a copy of ``tests/conftest.py``, once as a user's machine
(``CI`` unset) and once as CI (``CI=true``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import LONGEST_FIRST

TESTS = '''
import pytest
from conftest import skip_or_fail


def test_needs_a_service():
    skip_or_fail("PostgreSQL did not start")


@pytest.mark.skipif(True, reason="needs Chromium (Debian package `chromium`)")
def test_needs_a_browser():
    pass


@pytest.mark.skipif(True, reason="needs a CUDA GPU")
def test_needs_hardware():
    pass
'''


def outcomes(tmp_path: Path, ci: str | None) -> tuple[dict[str, int], str]:
    """Counts of each outcome of the three tests, and pytest's output."""
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_rules.py").write_text(TESTS)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-n", "0", "-p", "no:cacheprovider", "-p", "no:randomly",
                             str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    last = result.stdout.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", last)}
    return counts, result.stdout


def test_on_a_users_machine_missing_things_are_skips(tmp_path: Path) -> None:
    counts, out = outcomes(tmp_path, None)
    assert counts == {"skipped": 3}, out
    assert "PostgreSQL did not start" in out


def test_on_ci_missing_things_fail_except_hardware(tmp_path: Path) -> None:
    counts, out = outcomes(tmp_path, "true")
    assert counts == {"failed": 1, "error": 1, "skipped": 1}, out  # the skipif happens in setup: an error
    assert "on CI this must run, but: PostgreSQL did not start" in out
    assert "skipped on CI, where everything must run" in out and "needs Chromium" in out
    assert re.search(r"SKIPPED .*needs a CUDA GPU", out)


def test_the_files_run_first_exist() -> None:
    """conftest's longest-first order names real files (a renamed one would silently fall back to the end)."""
    root = Path(__file__).resolve().parents[1]
    assert [name for name in LONGEST_FIRST if not (root / name).is_file()] == []
