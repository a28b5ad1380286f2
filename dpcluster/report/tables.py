"""The report's data: a folder's levels and analyses as pandas frames (only the current spec's jobs where the
folder has a spec), and the per-level summary the terminal, the CSV and the page share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dpcluster.errors import UserError
from dpcluster.results.analyses import SCHEMAS, read_analysis
from dpcluster.results.levels import read_levels
from dpcluster.sweeps.layout import SweepLayout


# The levels' columns the figures and the summary use: not the per-layer lists, which cost more to turn into
# pandas objects than everything else (the kept-weight histograms come from their own analysis).
LEVEL_COLUMNS = ["dataset", "model", "method", "images_per_class", "rewind", "grid", "experiment_id", "seed", "round",
                 "sparsity", "test_accuracy", "mask_search_seconds", "mask_search_examples", "time_to_mask_seconds",
                 "time_to_mask_examples"]


@dataclass
class ReportData:
    levels: pd.DataFrame
    analyses: dict[str, pd.DataFrame]
    # Evaluations of distilled sets on their own (evaluate-set, distill), a row per trained network.
    set_evaluations: pd.DataFrame = field(default_factory=pd.DataFrame)


def series_label(frame: pd.DataFrame) -> pd.Series:
    """A method's line: its name, with the distilled-set size where it has one (distilled-10 ≠ distilled-50), the
    rewind point where it rewinds (imp (rewind 0ep) ≠ imp (rewind 1ep)) and the sweep's grid point where it has
    one."""
    ipc = frame["images_per_class"].fillna(0).astype(int)
    label = frame["method"].astype(str).where(ipc == 0, frame["method"].astype(str) + "-" + ipc.astype(str))
    rewind = frame["rewind"] if "rewind" in frame else pd.Series(None, index=frame.index, dtype=object)
    label = label.where(rewind.isna(), label + " (rewind " + rewind.astype(str) + ")")
    # A sweep's grid point splits a method into a series per point: "imp [training.lr=0.01]".
    grid = frame["grid"] if "grid" in frame else pd.Series(None, index=frame.index, dtype=object)
    return label.where(grid.isna(), label + " [" + grid.astype(str) + "]")


def load(folder: Path) -> ReportData:
    """A folder's results, analyses and set evaluations; a folder may hold set evaluations alone (evaluate-set's
    ``--out``)."""
    from dpcluster.results.set_evaluations import read_evaluations

    layout = SweepLayout(Path(folder))
    sets = read_evaluations(layout.set_evaluations_dir).to_pandas()
    if not layout.results_dir.exists():
        if not sets.empty:
            return ReportData(pd.DataFrame(columns=LEVEL_COLUMNS + ["series"]), {}, sets)
        raise UserError(f"{folder}: not a sweep or run folder with results (no {layout.results_dir}), nor one "
                        f"with set evaluations")
    from dpcluster.sweeps.coordinator import current_job_ids

    names = current_job_ids(folder)
    levels = read_levels(layout.results_dir, names, LEVEL_COLUMNS).to_pandas()
    if levels.empty and sets.empty:
        raise UserError(f"{folder}: no results yet (expected Parquet files under {layout.results_dir})")
    levels["series"] = series_label(levels)
    analyses = {}
    for kind in SCHEMAS:
        frame = read_analysis(layout.analysis_dir(kind), kind, names).to_pandas()
        if not frame.empty:
            frame["series"] = series_label(frame)
        analyses[kind] = frame
    return ReportData(levels, analyses, sets)


def _round(frame: pd.DataFrame) -> pd.DataFrame:
    # The same level across seeds has the same exact sparsity; rounding only guards against float noise.
    frame = frame.copy()
    frame["sparsity"] = frame["sparsity"].round(6)
    return frame


def summary(data: ReportData) -> pd.DataFrame:
    """One row per data set, model, series and sparsity: accuracy (mean, population std over seeds, seeds),
    time-to-mask, and the analyses' means where they were run."""
    keys = ["dataset", "model", "series", "sparsity"]
    if data.levels.empty:
        return pd.DataFrame(columns=keys + ["accuracy_mean", "accuracy_std", "seeds", "mask_search_seconds",
                                            "time_to_mask_seconds", "time_to_mask_examples"])
    levels = _round(data.levels)
    out = levels.groupby(keys).agg(
        accuracy_mean=("test_accuracy", "mean"), accuracy_std=("test_accuracy", lambda v: v.std(ddof=0)),
        seeds=("test_accuracy", "count"), mask_search_seconds=("mask_search_seconds", "mean"),
        time_to_mask_seconds=("time_to_mask_seconds", "mean"),
        time_to_mask_examples=("time_to_mask_examples", "mean")).reset_index()
    stability = data.analyses.get("stability")
    if stability is not None and not stability.empty:
        per_level = _round(stability).groupby(keys + ["seed"])["instability"].first().reset_index()
        out = out.merge(per_level.groupby(keys)["instability"].mean().rename("instability").reset_index(),
                        on=keys, how="left")
    sharp = data.analyses.get("sharpness")
    if sharp is not None and not sharp.empty:
        out = out.merge(_round(sharp).groupby(keys).agg(top_eigenvalue=("top_eigenvalue", "mean"),
                                                        hessian_trace=("trace", "mean")).reset_index(),
                        on=keys, how="left")
    out = out.sort_values(keys).reset_index(drop=True)
    return _grid_columns(out, levels)


def _grid_columns(out: pd.DataFrame, levels: pd.DataFrame) -> pd.DataFrame:
    """The summary with one column per grid key (the value of each series' grid point), after the series."""
    from dpcluster.specs.experiment import grid_columns

    if "grid" not in levels or levels["grid"].isna().all():
        return out
    of_series = levels.dropna(subset=["grid"]).groupby("series")["grid"].first().to_dict()
    position = out.columns.get_loc("series") + 1
    for offset, (key, values) in enumerate(grid_columns([of_series.get(s) for s in out["series"]]).items()):
        out.insert(position + offset, key, values)
    return out
