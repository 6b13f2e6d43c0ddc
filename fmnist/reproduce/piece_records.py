"""A piece's place in the results ledger: is it done (today's recipe, these seeds), and its record written.

Why apart from the runner: these are the only functions that decide whether a piece runs again, so the
resuming rule reads in one place (the ledger, not a run folder, is what a budget resumes from).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmnist.ledger import find_record, make_record, provenance, sha256_file, write_record
from fmnist.reproduce import records as R
from fmnist.reproduce.experiments import Context, Experiment
from fmnist.reproduce.recipes import Freshness


def record_piece(ctx: Context, exp: Experiment, item: str, recipe: Mapping[str, Any], metrics: Mapping[str, Any],
            seconds: float | None, *, seed: int | None = None, commit: str | None = None,
            extra: Mapping[str, Any] | None = None, **sections: Any) -> Path:
    prov = provenance(device_name=ctx.device_name, commit=commit, command=ctx.command, seconds=seconds,
                      **(extra or {}))
    record = make_record(kind=exp.kind, budget=ctx.budget.name, experiment=exp.name, item=item, device=ctx.device,
                         recipe=recipe, metrics=metrics, provenance=prov, title=exp.title, group=exp.group,
                         seed=seed, **sections)
    path = write_record(ctx.ledger, record)
    ctx.log(f"  {exp.name} {item}: recorded {path}")
    return path


def piece_done(ctx: Context, exp: Experiment, item: str, seeds: list[int] | None = None) -> bool:
    """Whether the piece's record is in the ledger, of today's recipe and (an ensemble's) of these seeds: then the
    piece is skipped."""
    record = find_record(ctx.ledger, ctx.budget.name, exp.name, item, ctx.device)
    same_seeds = seeds is None or (record is not None and record["recipe"].get("seeds") == seeds)
    if record is not None and same_seeds and Freshness(ctx).is_current(record):
        ctx.log(f"  {exp.name} {item}: in the ledger already")
        return True
    if record is not None:
        ctx.log(f"  {exp.name} {item}: its record is of another recipe (stale); running it again")
    return False


def checkpoint_entry(ctx: Context, path: str | Path | None) -> dict[str, Any] | None:
    if not path or not Path(path).is_file():
        return None
    return {"name": R.relative_name(path, ctx.root), "sha256": sha256_file(path)}


def has_finished(ctx: Context, exp: Experiment, model: str, seeds: list[int]) -> bool:
    """Whether ``model``'s training piece has finished these seeds (in the ledger, or as run folders here).

    A downstream piece only scores finished models: ``--only explain`` does not train every model first. A seed
    in the ledger whose run folder is not on this machine is trained again before it is scored; that run repeats
    the recorded one only on the same hardware and precision, so the piece's record names what it scored
    (:func:`fmnist.reproduce.run.scored_runs`).
    """
    freshness = Freshness(ctx)

    def in_ledger(seed: int) -> bool:
        record = find_record(ctx.ledger, ctx.budget.name, model, f"s{seed}", ctx.device)
        return record is not None and freshness.is_current(record)

    missing = [seed for seed in seeds if not (ctx.run_dir(model, seed) / "metrics.json").is_file()
               and not in_ledger(seed)]
    if missing:
        ctx.log(f"  {exp.name}: `{model}` has not finished seed(s) {', '.join(map(str, missing))}; run `--only "
                f"{model}` first. Skipped.")
    return not missing
