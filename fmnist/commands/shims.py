"""The older spellings, kept as thin shims onto the verbs: ``train.py``, ``evaluate.py``, ``python -m fmnist.*``.

Each takes the same options and prints the same usage as before (``prog`` names the old spelling); the work
is the verb's. ``evaluate.py`` with no verb is ``fmnist evaluate``.
"""

from __future__ import annotations

import sys

from fmnist.commands import BY_NAME, call, guarded, help_text

EVALUATE_VERBS = ("stats", "compare", "gradcam", "explain-check", "predict", "ood", "ensemble", "calibrate")
EVALUATE_FORMS = """
  RUN_DIR_OR_CKPT [options]   full report (metrics, confusion matrix, errors) for a trained model
  --baseline NAME [options]   fit/evaluate a scikit-learn baseline (logreg, svm, rf, knn, mlp)
  RUN --dataset fashion-c     accuracy under 16 corruptions, mean, mCE vs a reference (logreg)"""


def evaluate_usage() -> str:
    """``evaluate.py --help``: its verbs from the one table, plus the report's own forms."""
    verbs = tuple(BY_NAME[name] for name in EVALUATE_VERBS)
    text = help_text("evaluate.py", verbs).replace("usage: evaluate.py VERB [options]",
                                                   "usage: evaluate.py VERB ... | RUN_DIR_OR_CKPT [options] | "
                                                   "--baseline NAME [options]")
    head, _, tail = text.partition("\n\nRun `")
    return f"{head}\n{EVALUATE_FORMS}\n\nRun `evaluate.py VERB --help` for the options of each (= `fmnist VERB`)."


def evaluate_py(argv: list[str] | None = None) -> int:
    """``python evaluate.py [VERB] ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(evaluate_usage())
        return 0 if argv else 2
    if argv[0] in EVALUATE_VERBS:
        return guarded(lambda: call(argv[0], argv[1:], prog=f"evaluate.py {argv[0]}"))
    return guarded(lambda: call("evaluate", argv, prog="evaluate.py"))


def train_py(argv: list[str] | None = None) -> int:
    """``python train.py ...`` = ``fmnist train ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return guarded(lambda: call("train", argv, prog="train.py"))


def module_main(verb: str, prog: str, argv: list[str] | None = None) -> int:
    """``python -m fmnist.sweep`` and friends = ``fmnist VERB``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return guarded(lambda: call(verb, argv, prog=prog))
