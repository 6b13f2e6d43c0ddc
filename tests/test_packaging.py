"""A wheel carries the studied recipes: a non-editable install trains with the same resolved config as the clone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fmnist.errors import FmnistError
from fmnist.training import api
from fmnist.training.api import resolve_config

REPO = Path(__file__).resolve().parents[1]
RESOLVE = ("import json, sys; from fmnist.training.api import CONFIG_DIR, resolve_config; "
           "print(json.dumps({'dir': str(CONFIG_DIR), 'cfg': {m: resolve_config(m) for m in sys.argv[1:]}}))")
MODELS = ["deep", "vggbn", "speedrun", "transfer", "cnn2"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the source: setuptools writes build/ and *.egg-info beside what it builds."""
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source") / "fmnist-src"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "lightning_logs", "runs", "reports", "__pycache__", ".*_cache"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(out), str(source)], capture_output=True, text=True, cwd=source, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = out.glob("fmnist-*.whl")
    return path


def test_the_wheel_holds_every_recipe(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"fmnist/configs/{p.relative_to(REPO / 'configs').as_posix()}" for p in (REPO / "configs").rglob("*.yaml")}
    assert shipped and shipped <= names


def test_the_wheel_installs_the_fmnist_console_script(wheel: Path, tmp_path: Path) -> None:
    """entry_points.txt names fmnist.commands:main, and that entry point answers from the installed copy."""
    archive = zipfile.ZipFile(wheel)
    (entry_points,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = archive.read(entry_points).decode()
    assert "[console_scripts]" in text and "fmnist = fmnist.commands:main" in text
    site = tmp_path / "site"
    archive.extractall(site)
    done = subprocess.run([sys.executable, "-c", "import sys; from fmnist.commands import main; sys.exit(main())",
                           "--help"], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert done.returncode == 0 and "usage: fmnist VERB" in done.stdout, done.stderr[-2000:]


def test_an_installed_wheel_resolves_the_same_recipes_as_the_clone(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    done = subprocess.run([sys.executable, "-c", RESOLVE, *MODELS], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    installed = json.loads(done.stdout)
    assert Path(installed["dir"]).resolve().is_relative_to(site.resolve())  # the wheel's own copy, not the clone
    assert installed["cfg"] == json.loads(json.dumps({m: resolve_config(m) for m in MODELS}))


def test_a_missing_recipe_is_one_sentence_not_a_run_with_defaults(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "CONFIG_DIR", tmp_path / "configs")
    with pytest.raises(FmnistError, match=r"^the recipe of 'deep' \(.*deep\.yaml\) is not installed with this copy "
                                          r"of fmnist; reinstall it"):
        resolve_config("deep")
