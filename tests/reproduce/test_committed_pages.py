"""README's results table, RESULTS.md and the HTML page are what the committed ledger gives, on any machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fmnist.errors import FmnistError
from fmnist.reproduce.collect import collect
from fmnist.reproduce.experiments import BUDGETS
from fmnist.reproduce.page import WRITTEN_PREFIX, write_results
from fmnist.reproduce.readme import BEGIN, END, block, replace_block

REPO = Path(__file__).resolve().parents[2]
LEDGER = REPO / "results"


def _between_markers(text: str) -> list[str]:
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n").splitlines()


def _without_written(text: str) -> list[str]:
    return [line for line in text.splitlines() if WRITTEN_PREFIX not in line]


def test_readme_results_block_is_what_the_ledger_gives() -> None:
    expected = block(collect(LEDGER, BUDGETS["full"]), LEDGER)
    assert _between_markers((REPO / "README.md").read_text()) == expected, (
        "README's results table differs from the ledger: run `python -m fmnist.reproduce --budget full --report-only`")


@pytest.mark.parametrize("budget", ["full", "quick"])
def test_committed_pages_are_what_the_ledger_gives(budget: str, tmp_path: Path) -> None:
    """Regenerated into a scratch copy of the repository: identical but for the line that says when."""
    spec = BUDGETS[budget]
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    shutil.copytree(REPO / "docs" / "results", tmp_path / "docs" / "results")
    write_results(LEDGER, spec, repo=tmp_path)
    for name in (spec.results_md, f"{spec.report_dir}/index.html"):
        assert _without_written((tmp_path / name).read_text()) == _without_written((REPO / name).read_text()), (
            f"{name} differs from the ledger: run `python -m fmnist.reproduce --budget {budget} --report-only`")


def test_a_readme_without_markers_is_one_sentence() -> None:
    with pytest.raises(FmnistError, match="has no results block; put the two lines"):
        replace_block("# no markers here\n", ["x"], Path("README.md"))
    text = f"a\n{BEGIN}\nold\n{END}\nb\n"
    assert replace_block(text, ["new", "lines"], Path("README.md")) == f"a\n{BEGIN}\nnew\nlines\n{END}\nb\n"
