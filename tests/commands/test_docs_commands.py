"""Every command that README.md and docs/*.md show works in both spellings: the old one and ``fmnist VERB``.

Each command line of the pages' code blocks is read here (continuations joined, ``&&`` chains split), written in
the other spelling, and both are dispatched through their real entry points (``train.py``'s, ``evaluate.py``'s,
``python -m fmnist.*``'s shims and ``fmnist``'s ``main``) with only the verb's *work* replaced by a recorder: so
the options are parsed for real (a misspelt flag in a page fails here), and both spellings must reach the same
verb with the same parsed options. No training runs; nothing heavy is imported.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

import fmnist.commands as commands
from fmnist.commands import main
from fmnist.commands.shims import EVALUATE_VERBS, evaluate_py, module_main, train_py

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# python -m MODULE -> (verb, the shim's prog)
MODULES = {"fmnist.reproduce": ("reproduce", "python -m fmnist.reproduce"),
           "fmnist.sweep": ("sweep", "python -m fmnist.sweep"),
           "fmnist.reproduce.html_check": ("page-check", "python -m fmnist.reproduce.html_check")}
COMMAND = re.compile(r"^(python (train|evaluate)\.py|python -m fmnist[.\w]*|fmnist [a-z-]+)(\s|$)")


def code_lines(page: Path) -> list[str]:
    """The lines of a page's fenced code blocks: comments cut, ``\\`` continuations joined."""
    lines, inside, current = [], False, ""
    for raw in page.read_text().splitlines():
        if raw.lstrip().startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        text = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        current = f"{current} {text}".strip()
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        if current:
            lines.append(current)
        current = ""
    return lines


def documented_commands() -> list[tuple[str, str]]:
    """(page, command) for every fmnist command the pages show; usage synopses (``[...]``) and shell
    variables are left out (they are not meant to be typed as they stand)."""
    found = []
    for page in PAGES:
        for line in code_lines(page):
            for piece in re.split(r"\s*(?:&&|;|\|)\s*", line):
                piece = re.sub(r"^(\w+=\S+\s+)+", "", piece)  # VAR=value prefixes
                if COMMAND.match(piece) and "[" not in piece and "$" not in piece:
                    found.append((page.name, piece))
    return found


def spelling(command: str) -> tuple[str, Callable[[], int]]:
    """The command's verb line (``fmnist VERB ...``) and a call of the entry point the page's spelling uses."""
    words = shlex.split(command)
    if words[0] == "fmnist":
        return command, lambda: main(words[1:])
    if words[1] == "train.py":
        new = ["models"] if words[2:] == ["--list-models"] else ["train", *words[2:]]
        return shlex.join(["fmnist", *new]), lambda: train_py(words[2:])
    if words[1] == "evaluate.py":
        rest = words[2:]
        new = rest if rest and rest[0] in EVALUATE_VERBS else ["evaluate", *rest]
        return shlex.join(["fmnist", *new]), lambda: evaluate_py(rest)
    if words[2] == "fmnist.commands":  # the console script itself, `python -m fmnist.commands VERB ...`
        return shlex.join(["fmnist", *words[3:]]), lambda: main(words[3:])
    verb, prog = MODULES[words[2]]
    return shlex.join(["fmnist", verb, *words[3:]]), lambda: module_main(verb, prog, words[3:])


def old_spelling(new: list[str]) -> list[str]:
    """``fmnist VERB ...`` written the old way (what the shims take)."""
    verb, rest = new[0], new[1:]
    if verb == "train":
        return ["python", "train.py", *rest]
    if verb == "models":
        return ["python", "train.py", "--list-models", *rest]
    if verb == "evaluate":
        return ["python", "evaluate.py", *rest]
    if verb in EVALUATE_VERBS:
        return ["python", "evaluate.py", verb, *rest]
    if verb == "warm":  # new with the console script: its other spelling is the script's module
        return ["python", "-m", "fmnist.commands", *new]
    module = next(m for m, (v, _) in MODULES.items() if v == verb)
    return ["python", "-m", module, *rest]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, argparse.Namespace]]:
    """Replace each verb's work module by a recorder of (verb, parsed options)."""
    calls: list[tuple[str, argparse.Namespace]] = []

    def load(verb: commands.Verb) -> SimpleNamespace:
        return SimpleNamespace(run=lambda args: calls.append((verb.name, args)) or 0)

    monkeypatch.setattr(commands, "load", load)
    return calls


def comparable(verb: str, args: argparse.Namespace) -> tuple[str, dict]:
    """The verb and its parsed options without the program name (which names the spelling, by design);
    ``train.py --list-models`` is the train verb's way of saying ``fmnist models`` (every model: pattern ``*``)."""
    if verb == "train" and args.action == "models":
        return "models", {"pattern": "*"}
    return verb, {k: v for k, v in vars(args).items() if k != "prog"}


def test_the_pages_show_commands_of_every_spelling() -> None:
    """The reader below finds what it should: if it found nothing, the test of each command would pass vacuously."""
    commands_shown = [c for _, c in documented_commands()]
    assert len(commands_shown) >= 60
    for start in ("python train.py --model", "python train.py fit --config", "python evaluate.py predict",
                  "python -m fmnist.reproduce --budget", "python -m fmnist.sweep --config", "fmnist train --model",
                  "fmnist models", "python -m fmnist.reproduce.html_check"):
        assert any(c.startswith(start) for c in commands_shown), start


@pytest.mark.parametrize(("page", "command"), documented_commands(),
                         ids=[f"{p}:{c[:60]}" for p, c in documented_commands()])
def test_a_documented_command_works_in_both_spellings(page: str, command: str, recorded: list) -> None:
    new, call_as_shown = spelling(command)
    new_words = shlex.split(new)[1:]
    old_words = old_spelling(new_words)
    old_command, call_old = spelling(shlex.join(old_words))
    assert shlex.split(old_command)[1:] == new_words  # the two spellings translate into each other

    assert call_as_shown() == 0, f"{page}: `{command}` did not parse"
    assert main(new_words) == 0, f"{page}: `{new}` did not parse"
    assert call_old() == 0, f"{page}: `{shlex.join(old_words)}` did not parse"
    assert len(recorded) == 3
    first, second, third = (comparable(verb, args) for verb, args in recorded)
    assert first == second == third and first[0] == new_words[0]
    for word in new_words:  # a path a page names beside a recipe must exist (configs/..., docs/...)
        if re.fullmatch(r"(configs|docs)/[\w./-]+", word):
            assert (ROOT / word).exists(), f"{page}: `{command}` names {word}, which does not exist"


def test_a_misspelt_flag_in_a_page_would_fail_here(recorded: list, capsys: pytest.CaptureFixture) -> None:
    """The check has teeth: a flag the verb does not take is refused by both spellings."""
    for call in (lambda: main(["reproduce", "--budgett", "quick"]),
                 lambda: module_main("reproduce", "python -m fmnist.reproduce", ["--budgett", "quick"]),
                 lambda: evaluate_py(["predict", "RUN", "photo.jpg", "--preprocesss", "plain"])):
        with pytest.raises(SystemExit) as stopped:  # argparse's usage error: status 2
            call()
        assert stopped.value.code == 2
    assert recorded == []
    assert "unrecognized arguments: --budgett" in capsys.readouterr().err
