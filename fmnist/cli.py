"""``python evaluate.py``: one entry point, one sub-command per concern (the top floor of the package).

``stats`` -> dataset statistics, ``compare`` -> results table across runs, ``gradcam`` ->
Grad-CAM figures, ``predict`` -> photos/URLs/IIIF; anything else (a run folder, a
checkpoint, ``--baseline NAME``) -> the full evaluation report. Sub-commands are imported
lazily so ``stats`` does not pay for Captum or scikit-learn.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from fmnist.errors import FmnistError
from fmnist.files import NO_SPACE, disk_error

COMMANDS = {
    "stats": "fmnist.data.stats",
    "compare": "fmnist.evaluation.compare",
    "gradcam": "fmnist.interpret.cli",
    "explain-check": "fmnist.interpret.check",
    "predict": "fmnist.photos.predict",
    "ood": "fmnist.evaluation.ood",
    "ensemble": "fmnist.evaluation.ensemble",
    "calibrate": "fmnist.evaluation.calibration",
}
DEFAULT = "fmnist.evaluation.cli"

USAGE = """usage: evaluate.py {stats,compare,gradcam,explain-check,predict,ood,ensemble,calibrate} ... | RUN_DIR_OR_CKPT [options] | --baseline NAME [options]

  stats                       image counts, class counts and pixel statistics of every split
  RUN_DIR_OR_CKPT             full report (metrics, confusion matrix, errors) for a trained model
  --baseline NAME             fit/evaluate a scikit-learn baseline (logreg, svm, rf, knn, mlp)
  compare RUN_OR_REPORT ...   one table and chart across runs and baselines
  gradcam RUN_DIR_OR_CKPT     Grad-CAM figures (--method: hirescam, gradcam, guided-gradcam, occlusion, ig)
  explain-check RUN_DIR_OR_CKPT   sanity/faithfulness checks of the maps (blank, deletion, randomisation)
  predict RUN_DIR_OR_CKPT PATH_OR_URL ...   classify photos (files, folders, URLs, IIIF manifests)
  RUN --dataset fashion-c     accuracy under 16 corruptions, mean, mCE vs a reference (logreg)
  ood RUN ... --out mnist noise   out-of-distribution detection (AUROC, AUPR, FPR@95TPR)
  ensemble RUN1 RUN2 ...      average several runs' probabilities; report, corruptions, OOD
  calibrate RUN               fit a temperature on the validation split, save it with the run

Run `evaluate.py COMMAND --help` for the options of each."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    target = COMMANDS.get(argv[0])
    args = argv[1:] if target else argv
    try:
        module = importlib.import_module(target or DEFAULT)
        return int(module.cli_main(args) or 0)
    except FmnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk wherever it struck (reports are written atomically: nothing half-written)
        if exc.errno not in NO_SPACE:
            raise
        print(f"error: {disk_error(Path(exc.filename or '.'), exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
