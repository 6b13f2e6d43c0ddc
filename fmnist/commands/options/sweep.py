"""``fmnist sweep --config ...`` (= ``python -m fmnist.sweep``): options."""

from __future__ import annotations

import argparse

from fmnist.commands import names as N
from fmnist.commands.options.errors import SentenceParser


def build_parser(prog: str = "fmnist sweep") -> argparse.ArgumentParser:
    parser = SentenceParser(prog=prog, description="Hyperparameter sweep with Optuna (docs/sweeps.md).")
    parser.add_argument("--config", required=True, help="sweep YAML, e.g. configs/sweeps/deep.yaml")
    parser.add_argument("--trials", type=int, help="finished trials wanted in the study (default: the YAML's trials)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes on the same study (default 1)")
    parser.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///runs/sweeps/<name>/study.db); "
                                          "e.g. postgresql://user@host/db to share a study between machines")
    parser.add_argument("--name", help="study name (default: the YAML's name, else <file stem>-sweep)")
    parser.add_argument("--fixed", action="append", default=[], metavar="KEY=VALUE",
                        help="hold a key at one value for this study (removed from the space if searched); "
                             "repeatable, e.g. --fixed data.train_subset=2000 --name smoke")
    parser.add_argument("--out", help="folder for study.db, best.yaml and the report (default runs/sweeps/<name>)")
    parser.add_argument("--logdir", help="root of the trial folders (default: the base config's save_dir)")
    parser.add_argument("--heartbeat", type=int, default=N.SWEEP_HEARTBEAT,
                        help="seconds between a trial's heartbeats; silent for 2x this long = stale, re-run")
    parser.add_argument("--final-fit", action="store_true",
                        help="retrain the best trial on train+val per seed and test it once")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of the final fit (default: the YAML's final.seeds)")
    parser.add_argument("--report-only", action="store_true", help="run no trial; rewrite best.yaml and the report")
    return parser
