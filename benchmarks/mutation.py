"""Mutation score of the core modules: how many small, deliberate bugs their own tests catch.

    python benchmarks/mutation.py                                   # every module below, this checkout's tests
    python benchmarks/mutation.py --module fmnist/data/idx.py       # one module
    python benchmarks/mutation.py --tests-from 864e40f              # the same mutants against older test files
    python benchmarks/mutation.py --at 864e40f                      # the modules and tests of then: the old score

Not run by CI (minutes per module). A small tool of our own rather than mutmut: mutmut 3 runs a copy of the
package from its own ``mutants/`` folder, which this layout (tests importing ``fmnist`` and starting
``train.py`` subprocesses) does not fit. What it does:

* **Mutants**: one change at one place of the module's code, the classic operators: a comparison turned into
  its neighbour (``<`` / ``<=``, ``==`` / ``!=``, ``in`` / ``not in``, ``is`` / ``is not``), an arithmetic or
  bitwise operator swapped (``+`` / ``-``, ``*`` / ``/``, ``//`` -> ``/``, ``|`` / ``&`` ...), ``and`` / ``or``,
  a ``not`` or unary minus dropped, a number ``n`` -> ``n + 1``, ``True`` / ``False``, ``return x`` ->
  ``return None``. Docstrings, other strings (messages are matched by the tests separately) and annotations
  are left alone. Module-level constants count; class bodies outside methods do not.
* **Running**: the test files are imported once, in this process; each mutant runs them in a forked child
  that swaps the mutated function's code object into the live function (so every ``from ... import`` of it
  sees the mutant) or, for a module-level constant, the value into the module. A mutant is **killed** when
  its tests fail (or error, or run past ``--timeout``), and **survives** when they pass. The test files must
  pass unmutated first. A test that runs the code in a subprocess cannot see a mutant (the score undercounts
  such tests, never overcounts).
* **Where**: in a copy of the checkout (``git ls-files``) in a scratch folder; the checkout is never touched.

Prints one line per module (killed / mutants, score) and the surviving mutants (line, change), so a test
can be written for each. docs/testing.md has the table.
"""

from __future__ import annotations

import argparse
import ast
import copy
import inspect
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FunctionType, ModuleType

ROOT = Path(__file__).resolve().parent.parent

# module -> its own test files (what the issue asked to score each module with)
MODULES: dict[str, list[str]] = {
    "fmnist/data/idx.py": ["tests/data/test_idx.py"],
    "fmnist/data/splits.py": ["tests/data/test_splits.py"],
    "fmnist/data/augment.py": ["tests/data/test_augment.py", "tests/photos/test_preprocess_photo_augment.py"],
    "fmnist/evaluation/metrics.py": ["tests/evaluation/test_evaluation.py"],
    "fmnist/evaluation/calibration.py": ["tests/evaluation/test_calibration.py"],
    "fmnist/serialization.py": ["tests/test_serialization.py", "tests/test_untrusted_files.py"],
    "fmnist/runs.py": ["tests/test_runs.py"],
    "fmnist/photos/fetch.py": ["tests/photos/test_fetch_safety.py"],
}

COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
           ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BINARY = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
          ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.LShift: ast.RShift, ast.RShift: ast.LShift,
          ast.BitOr: ast.BitAnd, ast.BitAnd: ast.BitOr, ast.BitXor: ast.BitOr}
BOOLEAN = {ast.And: ast.Or, ast.Or: ast.And}


@dataclass
class Mutant:
    number: int
    line: int
    change: str
    owner: str | None  # qualified name of the top-level function or method holding it; None: module level
    source: str  # the whole mutated module


def _is_docstring(node: ast.AST, parent: ast.AST | None) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            and isinstance(parent, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))


def _sites(tree: ast.Module) -> list[tuple[ast.AST, str | None]]:
    """Every node a mutation may change, with the function or method that owns it (None: module level)."""
    sites: list[tuple[ast.AST, str | None]] = []

    def visit(node: ast.AST, owner: str | None, in_class: str | None, parent: ast.AST | None) -> None:
        if _is_docstring(node, parent):
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if owner is None:
                owner = f"{in_class}.{node.name}" if in_class else node.name
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    visit(default, owner, in_class, node)
            for statement in node.body:  # not the annotations nor the decorators
                visit(statement, owner, in_class, node)
            return
        if isinstance(node, ast.ClassDef):
            if owner is None and in_class is None:
                for statement in node.body:
                    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        visit(statement, None, node.name, node)
            return  # class bodies outside methods, and classes inside functions, are left alone
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                visit(node.value, owner, in_class, node)
            return
        if isinstance(node, ast.If) and owner is None and isinstance(node.test, ast.Compare) \
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__":
            return
        if isinstance(node, (ast.Compare, ast.BinOp, ast.AugAssign, ast.BoolOp, ast.UnaryOp, ast.Return)) or (
                isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float))):
            sites.append((node, owner))
        for child in ast.iter_child_nodes(node):
            visit(child, owner, in_class, node)

    for statement in tree.body:
        visit(statement, None, None, tree)
    return sites


def _variants(node: ast.AST) -> list[tuple[str, object]]:
    """(description, how to apply it to a deep copy of ``node``) for each mutation of ``node``."""
    out: list[tuple[str, object]] = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in COMPARE:
                out.append((f"{type(op).__name__} -> {COMPARE[type(op)].__name__}", ("ops", i, COMPARE[type(op)]())))
    elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BINARY:
        out.append((f"{type(node.op).__name__} -> {BINARY[type(node.op)].__name__}", ("op", BINARY[type(node.op)]())))
    elif isinstance(node, ast.BoolOp):
        out.append((f"{type(node.op).__name__} -> {BOOLEAN[type(node.op)].__name__}", ("op", BOOLEAN[type(node.op)]())))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        out.append((f"drop {type(node.op).__name__}", ("unwrap",)))
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            out.append((f"{node.value} -> {not node.value}", ("value", not node.value)))
        else:
            out.append((f"{node.value!r} -> {node.value + 1!r}", ("value", node.value + 1)))
    elif isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        out.append(("return None", ("return_none",)))
    return out


def mutants(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    found: list[Mutant] = []
    for index, (node, owner) in enumerate(_sites(tree)):
        for change, how in _variants(node):
            mutated_tree = copy.deepcopy(tree)
            target = _sites(mutated_tree)[index][0]
            kind = how[0]
            if kind == "ops":
                target.ops[how[1]] = how[2]
            elif kind == "op":
                target.op = how[1]
            elif kind == "value":
                target.value = how[1]
            elif kind == "return_none":
                target.value = ast.Constant(None)
            elif kind == "unwrap":
                _replace(mutated_tree, target, target.operand)
            found.append(Mutant(len(found) + 1, node.lineno, change, owner, ast.unparse(mutated_tree)))
    return found


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(item is old for item in value):
                value[[i for i, item in enumerate(value) if item is old][0]] = new
                return
    raise ValueError("node not found")


def _function(namespace: dict, qualname: str) -> FunctionType:
    """The plain function behind ``qualname`` (unwrapping staticmethod, classmethod, property and decorators)."""
    first, _, rest = qualname.partition(".")
    obj = namespace[first]
    if rest:
        obj = obj.__dict__[rest]
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    elif isinstance(obj, property):
        obj = obj.fget
    return inspect.unwrap(obj)


_SIMPLE = (bool, int, float, str, bytes, tuple, frozenset, type(None))


def module_functions(module: ModuleType) -> list[FunctionType]:
    """The functions in ``module``'s namespace (imported ones too) and the methods of the classes it defines."""
    functions = [f for f in vars(module).values() if isinstance(f, FunctionType)]
    functions += [f for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__
                  for f in vars(c).values() if isinstance(f, FunctionType)]
    return functions


def apply(module: ModuleType, mutant: Mutant, path: str) -> None:
    """Make the live ``module`` behave as the mutated source (in this process only)."""
    namespace = {"__name__": module.__name__, "__file__": module.__file__, "__package__": module.__package__}
    exec(compile(mutant.source, path, "exec"), namespace)  # noqa: S102 - our own module, mutated
    if mutant.owner is not None:
        old, new = _function(vars(module), mutant.owner), _function(namespace, mutant.owner)
        old.__code__, old.__defaults__, old.__kwdefaults__ = new.__code__, new.__defaults__, new.__kwdefaults__
        return
    functions = module_functions(module)
    for name, value in namespace.items():  # module-level constants: the values the module's functions look up
        old = vars(module).get(name)
        if isinstance(value, _SIMPLE) and name in vars(module) and old != value:
            setattr(module, name, value)
            for function in functions:  # ... and the defaults they were bound to (``shape=IMAGE_SHAPE``)
                if function.__defaults__ and any(d is old for d in function.__defaults__):
                    function.__defaults__ = tuple(value if d is old else d for d in function.__defaults__)
                if function.__kwdefaults__ and any(d is old for d in function.__kwdefaults__.values()):
                    # keyword-only ones too (``*, n_bins=DEFAULT_BINS``): missed, such a mutant always survived
                    function.__kwdefaults__ = {k: value if d is old else d for k, d in function.__kwdefaults__.items()}


def _canary(*args: object, **kwargs: object) -> None:
    raise AssertionError("mutation canary: every function of the module under test raises")


def break_everything(module: ModuleType) -> None:
    """Every function of ``module`` (and its classes' methods) raises: the tests must fail, or they cannot see
    a mutant at all (they run the module in another process: a subprocess, or pytest-xdist workers)."""
    for function in module_functions(module):
        if function.__module__ == module.__name__ and not function.__code__.co_freevars:  # its own, not imported  # a closure's code can only take code with the same free variables
            function.__code__ = _canary.__code__


def run_tests(tests: list[str], mutant: tuple[ModuleType, Mutant, str] | ModuleType | None, timeout: float) -> str:
    """``passed``, ``failed`` (or ``error``) or ``timeout``: the test files in a forked child (``mutant``: one
    mutant applied, a module to break all of it, or None for the unmutated run)."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            signal.alarm(int(timeout))
            if isinstance(mutant, ModuleType):
                break_everything(mutant)
            elif mutant is not None:
                apply(*mutant)
            import pytest

            # -n 0: in this process. pyproject's addopts start pytest-xdist workers, fresh interpreters that
            # import the unmutated module: every mutant would survive.
            code = int(pytest.main(["-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", "-n", "0", *tests]))
        except BaseException:  # noqa: BLE001 - a mutant that breaks the module counts as caught
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "timeout" if os.WTERMSIG(status) == signal.SIGALRM else "error"
    code = os.WEXITSTATUS(status)
    return {0: "passed", 1: "failed"}.get(code, "error")


def scratch_copy(tests_from: str | None, at: str | None = None) -> Path:
    """The checkout's files (tracked and new) in a scratch folder; with ``tests_from``, that revision's tests/;
    with ``at``, that revision's whole tree (its modules scored with its own tests: the score as it was)."""
    folder = Path(tempfile.mkdtemp(prefix="fmnist-mutation-")) / "repo"
    if at:
        folder.mkdir()
        archive = subprocess.run(["git", "archive", at], cwd=ROOT, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        return folder
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    if tests_from:
        shutil.rmtree(folder / "tests")
        archive = subprocess.run(["git", "archive", tests_from, "tests"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
    return folder


def score(module_path: str, tests: list[str], timeout: float, log: bool = True) -> dict:
    """Run every mutant of ``module_path`` against ``tests`` (paths inside the current directory)."""
    import importlib

    name = module_path.removesuffix(".py").replace("/", ".")
    module = importlib.import_module(name)
    for test in tests:  # import the test files (and conftest) once, here, before any fork: children start warm
        if not Path(test).is_file():
            return {"module": module_path, "tests": tests, "error": f"{test} does not exist"}
        sys.path.insert(0, str(Path(test).resolve().parent))
        importlib.import_module("conftest")
        importlib.import_module(Path(test).stem)
    source = Path(module_path).read_text()
    found = mutants(source)
    started = time.monotonic()
    unmutated = run_tests(tests, None, 3600)
    if unmutated != "passed":
        return {"module": module_path, "tests": tests, "error": f"the tests do not pass unmutated ({unmutated})"}
    # A mutant gets --timeout or three times what the unmutated tests took, whichever is longer: on a loaded
    # machine a fixed limit would count slow-but-passing runs as caught.
    timeout = max(timeout, 3 * (time.monotonic() - started))
    if run_tests(tests, module, timeout) == "passed":
        return {"module": module_path, "tests": tests,
                "error": "the tests pass with every function of the module raising: they cannot see a mutant"}
    outcomes: dict[str, int] = {}
    survivors = []
    for mutant in found:
        outcome = run_tests(tests, (module, mutant, str(Path(module_path).resolve())), timeout)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome == "passed":
            survivors.append({"line": mutant.line, "change": mutant.change, "in": mutant.owner or "(module)"})
            if log:
                print(f"  survived: {module_path}:{mutant.line} {mutant.change} in {mutant.owner or '(module)'}",
                      flush=True)
    killed = len(found) - outcomes.get("passed", 0)
    return {"module": module_path, "tests": tests, "mutants": len(found), "killed": killed,
            "score": round(killed / len(found), 4) if found else None, "outcomes": outcomes,
            "seconds": round(time.monotonic() - started, 1), "survivors": survivors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES), help="score only these (repeatable)")
    parser.add_argument("--tests-from", help="git revision whose tests/ to use (e.g. the score before a change)")
    parser.add_argument("--at", help="git revision whose whole tree to score (its modules with its own tests): "
                                     "the score before a change that also moved the code")
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds per mutant before it counts as caught (at least 3x the unmutated run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    modules = args.module or list(MODULES)
    if args.at and args.tests_from:
        parser.error("give --at or --tests-from, not both")
    repo = scratch_copy(args.tests_from, args.at)
    os.chdir(repo)
    sys.path[:0] = [str(repo), str(repo / "tests")]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])
    os.environ.setdefault("FMNIST_NO_DOWNLOAD", "1")
    sys.dont_write_bytecode = True
    results = []
    for module_path in modules:
        result = score(module_path, MODULES[module_path], args.timeout)
        results.append(result)
        if "error" in result:
            print(f"{module_path}: {result['error']}", flush=True)
        else:
            print(f"{module_path}: {result['killed']}/{result['mutants']} killed = {result['score']:.1%} "
                  f"({result['seconds']:.0f} s; {result['outcomes']})", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"tests_from": args.tests_from or args.at or "working tree",
                                                    "module_from": args.at or "working tree", "results": results},
                                        indent=2) + "\n")
    shutil.rmtree(repo.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
