"""README's two set-up commands are what CI runs, word for word, and work on any machine (no ``../shared``)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from fmnist.commands.options.train import parse_shorthand

ROOT = Path(__file__).resolve().parents[1]


def readme_blocks() -> list[str]:
    """The bash blocks of README's "Set up and run" section, continuation lines joined (read here, line by line)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    section = lines[lines.index("## Set up and run") + 1:]
    section = section[:next(i for i, line in enumerate(section) if line.startswith("## "))]
    blocks, current = [], None
    for line in section:
        if line == "```bash":
            current = []
        elif line == "```" and current is not None:
            blocks.append(" ".join(part.strip().removesuffix("\\").strip() for part in current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def ci_commands() -> list[str]:
    out = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--print"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return out.splitlines()


def test_ci_runs_readmes_two_commands_word_for_word() -> None:
    train, tests = readme_blocks()
    ci_train, ci_tests = ci_commands()
    assert ci_tests == tests
    assert ci_train.startswith(train + " ")  # the same command, then the tiny budget
    budget = ci_train[len(train) + 1:]
    assert budget == ("--epochs 1 --trainer.limit_train_batches 20 --trainer.limit_val_batches 5 "
                      "--trainer.limit_test_batches 5")
    options = parse_shorthand(["--model", "deep", *shlex.split(budget)])  # flags train.py takes, as typed
    assert options.epochs == 1 and options.overrides == {"trainer.limit_train_batches": 20,
                                                         "trainer.limit_val_batches": 5,
                                                         "trainer.limit_test_batches": 5}


def test_readmes_commands_need_nothing_but_a_fresh_machine() -> None:
    train, tests = readme_blocks()
    setup = ('python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.14.1 torchvision==0.29.1 '
             '&& pip install -e ".[dev]" && apt-get update && apt-get install -y dataset-fashion-mnist && ')
    assert train == setup + "python train.py --model deep"
    assert tests == setup + "ruff check . && python -m pytest -q"
    for command in (train, tests):  # this project's ../shared/data is CI's convenience, never the user's
        assert "shared" not in command and "FMNIST_DATA_DIR" not in command and "export" not in command


def test_ci_takes_its_commands_from_the_readme_and_runs_them() -> None:
    """No copy of either command lives in .ci/run: both come from README.md and both are run."""
    script = (ROOT / ".ci" / "run").read_text()
    assert "pytest" not in script.replace("python -m pytest", "") and "train.py" not in script
    assert re.search(r'run_command="\$\(python3 \.ci/readme_command\.py run\) \$TINY"', script)
    assert re.search(r'test_command="\$\(python3 \.ci/readme_command\.py test\)"', script)
    assert 'bash -c "set -euo pipefail; $test_command"' in script
    assert 'bash -c "set -euo pipefail; $run_command"' in script
    assert "env -u FMNIST_DATA_DIR -u FMNIST_NO_DOWNLOAD" in script  # the copy runs as on a user's machine
