"""The papers' figures from a report's data, one function each; every function returns a matplotlib Figure or
None when the folder has nothing for it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dpcluster.report.tables import ReportData  # noqa: E402

PCT = 100
# Landscape panels per series at most, at levels spread over its sparsities: a sweep of 30 rounds would otherwise
# draw 30 contour plots per series, more than anyone reads and most of the report's time.
LANDSCAPE_LEVELS = 6
# Interpolation panels per row: a row of 30 levels is 100 inches wide.
PANELS_PER_ROW = 8


def _spread(values: list, most: int) -> list:
    """At most ``most`` of the sorted ``values``, evenly spaced, the first and the last among them."""
    if len(values) <= most:
        return values
    return [values[round(i * (len(values) - 1) / (most - 1))] for i in range(most)]


def _palette(data: ReportData) -> dict[str, str]:
    """One colour per series, the same in every figure."""
    names = sorted(set(data.levels["series"]))
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def _groups(frame: pd.DataFrame):
    """(title, rows) per data set and model."""
    for (dataset, model), rows in frame.groupby(["dataset", "model"]):
        yield f"{dataset} / {model}", rows


def _mean_std(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    rows = rows.assign(sparsity=rows["sparsity"].round(6))
    # Population std over seeds, as the run's tables and the aggregate report it.
    return rows.groupby("sparsity")[value].agg(mean="mean", std=lambda v: v.std(ddof=0),
                                               count="count").reset_index().fillna({"std": 0.0})


def _errorbars(ax, rows: pd.DataFrame, value: str, palette: dict[str, str], scale: float = 1.0) -> None:
    """One line per series: ``value`` against sparsity, mean ± std over seeds."""
    for series, part in rows.groupby("series"):
        stats = _mean_std(part, value)
        ax.errorbar(stats["sparsity"] * PCT, stats["mean"] * scale, yerr=stats["std"] * scale, marker="o", ms=3,
                    capsize=2, label=series, color=palette.get(series))


def _finish(figure, axes, legend_size: int = 8):
    """Grid and legend on every panel, laid out tight."""
    beside = False
    for ax in axes:
        ax.grid(alpha=0.3)
        if len(ax.get_legend_handles_labels()[1]) > 8:  # a grid's many series: beside the panel, not over it
            ax.legend(fontsize=legend_size - 1, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
            beside = True
        else:
            ax.legend(fontsize=legend_size)
    if beside:
        width, height = figure.get_size_inches()
        figure.set_size_inches(width + 4 * len(axes), height)
    figure.tight_layout()
    return figure


def accuracy_vs_sparsity(data: ReportData):
    """Test accuracy against sparsity per method, mean ± std over seeds, with the dense accuracy as a band."""
    groups = list(_groups(data.levels))
    figure, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 4.5), squeeze=False)
    for ax, (title, rows) in zip(axes[0], groups):
        dense = rows[rows["method"] == "dense"]
        several = dense["series"].nunique() > 1  # a grid's points: a band for each, in its series' colour
        for series, part in dense.groupby("series"):
            mean, std = part["test_accuracy"].mean() * PCT, part["test_accuracy"].std(ddof=0) * PCT
            std = 0.0 if pd.isna(std) else std
            colour = _palette(data).get(series) if several else "grey"
            ax.axhspan(mean - std, mean + std, color=colour, alpha=0.12 if several else 0.25,
                       label=f"{series} {mean:.1f} ± {std:.1f}")
            ax.axhline(mean, color=colour, lw=1, ls="--" if several else "-")
        _errorbars(ax, rows[rows["method"] != "dense"], "test_accuracy", _palette(data), PCT)
        ax.set(title=title, xlabel="sparsity (% of weights pruned)", ylabel="test accuracy (%)")
    return _finish(figure, axes[0])


def cost_vs_sparsity(data: ReportData):
    """What each mask cost: the mask search (inner loops, dashed) and the papers' time-to-mask (the search plus
    the final real-data training, solid), in seconds and in training examples."""
    levels = data.levels[data.levels["method"] != "dense"]
    if levels.empty:
        return None
    figure, (seconds, examples) = plt.subplots(1, 2, figsize=(12, 4.5))
    for series, part in levels.groupby("series"):
        for ax, search, total in ((seconds, "mask_search_seconds", "time_to_mask_seconds"),
                                  (examples, "mask_search_examples", "time_to_mask_examples")):
            color = _palette(data).get(series)
            ax.plot(_mean_std(part, total)["sparsity"] * PCT, _mean_std(part, total)["mean"], marker="o", ms=3,
                    color=color, label=f"{series} time-to-mask")
            ax.plot(_mean_std(part, search)["sparsity"] * PCT, _mean_std(part, search)["mean"], ls="--",
                    color=color, label=f"{series} search")
    seconds.set(xlabel="sparsity (%)", ylabel="seconds", title="time to find the mask")
    examples.set(xlabel="sparsity (%)", ylabel="training examples", title="training examples used")
    return _finish(figure, (seconds, examples), 7)


def interpolation_curves(data: ReportData):
    """Test error along the path between a level's two trained copies, per level, mean over seeds."""
    frame = data.analyses["stability"]
    if frame.empty:
        return None
    frame = frame.assign(sparsity=frame["sparsity"].round(4))
    curves = frame.groupby(["sparsity", "series", "alpha"])["test_error"].mean()
    levels = sorted(frame["sparsity"].unique())
    columns = min(len(levels), PANELS_PER_ROW)
    rows = -(-len(levels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows + 0.6), squeeze=False,
                                sharey=True)
    for ax, level in zip(axes.flat, levels):
        for series, curve in curves.loc[level].groupby(level="series"):
            ax.plot(curve.index.get_level_values("alpha"), curve.values * PCT, marker=".", label=series,
                    color=_palette(data).get(series))
        ax.set(title=f"{level * PCT:.1f}% sparse", xlabel="interpolation α")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(levels):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("test error (%)")
    # One legend for every panel: a series may be missing from some levels (dense has only its own).
    handles = {}
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, handle)
    figure.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 6), fontsize=8)
    figure.tight_layout(rect=(0, 0.6 / (3.4 * rows + 0.6), 1, 1))
    return figure


def instability_vs_sparsity(data: ReportData):
    """The error barrier against sparsity per method (mean ± std over seeds): near zero where the subnetwork is
    stable."""
    frame = data.analyses["stability"]
    if frame.empty:
        return None
    per_level = frame.groupby(["series", "seed", "sparsity"])["instability"].first().reset_index()
    figure, ax = plt.subplots(figsize=(7, 4.5))
    _errorbars(ax, per_level, "instability", _palette(data), PCT)
    ax.set(xlabel="sparsity (%)", ylabel="instability (error barrier, %)", title="linear mode connectivity")
    return _finish(figure, (ax,))


def landscapes(data: ReportData):
    """The loss over the plane around each method's trained subnetwork (first seed), one row per method, at up to
    six of its levels spread over its sparsities; the title says which loss."""
    frame = data.analyses["landscape"]
    if frame.empty:
        return None
    frame = frame[frame["seed"] == frame["seed"].min()].assign(sparsity=frame["sparsity"].round(4))
    planes = dict(tuple(frame.groupby(["series", "sparsity"])))
    shown = {series: _spread(sorted(level for s, level in planes if s == series), LANDSCAPE_LEVELS)
             for series in sorted({series for series, _ in planes})}
    columns = max(len(levels) for levels in shown.values())
    figure, axes = plt.subplots(len(shown), columns, figsize=(3.6 * columns, 3.2 * len(shown)), squeeze=False)
    for row, (series, levels) in zip(axes, shown.items()):
        for ax, level in zip(row, levels):
            grid = planes[(series, level)].pivot_table(index="b", columns="a", values="test_loss")
            # Rasterized: as vectors, an SVG of many filled contours takes seconds to write and megabytes to hold.
            contours = ax.contourf(grid.columns, grid.index, grid.values, levels=15, cmap="viridis",
                                   rasterized=True)
            figure.colorbar(contours, ax=ax, shrink=0.8)
            ax.plot([0], [0], "w+")
            ax.set(title=f"{series}, {level * PCT:.1f}% sparse", xlabel="direction 1", ylabel="direction 2")
        for ax in row[len(levels):]:
            ax.axis("off")
    # Which loss the planes are of (Li et al.'s: the training loss, BatchNorm as trained).
    splits = set(frame["split"].dropna()) if "split" in frame else set()
    what = {"train": "training loss, BatchNorm statistics as trained",
            "test": "test loss, BatchNorm statistics recomputed at each point"}
    figure.suptitle("; ".join(what[s] for s in sorted(splits)) if splits else "test loss", y=1.0)
    figure.tight_layout()
    return figure


def sharpness_vs_sparsity(data: ReportData):
    """Top Hessian eigenvalue and Hessian trace against sparsity per method (mean ± std over seeds)."""
    frame = data.analyses["sharpness"]
    if frame.empty:
        return None
    figure, (top, trace) = plt.subplots(1, 2, figsize=(12, 4.5))
    _errorbars(top, frame, "top_eigenvalue", _palette(data))
    _errorbars(trace, frame, "trace", _palette(data))
    top.set(xlabel="sparsity (%)", ylabel="top eigenvalue", title="sharpness: top Hessian eigenvalue")
    trace.set(xlabel="sparsity (%)", ylabel="trace", title="Hessian trace (Hutchinson)")
    return _finish(figure, (top, trace))


def kept_weights(data: ReportData):
    """Per layer, the initial values each method's mask keeps at its sparsest analysed level (first seed)."""
    frame = data.analyses["kept_weights"]
    frame = frame[frame["round"] > 0] if not frame.empty else frame
    if frame.empty:
        return None
    frame = frame[frame["seed"] == frame["seed"].min()]
    sparsest = frame.groupby("series")["round"].transform("max")
    frame = frame[frame["round"] == sparsest]
    series_names = sorted(frame["series"].unique())
    layers = list(dict.fromkeys(frame["layer"]))
    bins = {key: part.sort_values("low") for key, part in frame.groupby(["series", "layer"])}
    figure, axes = plt.subplots(len(series_names), len(layers), figsize=(3 * len(layers), 2.6 * len(series_names)),
                                squeeze=False)
    for i, series in enumerate(series_names):
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            part = bins.get((series, layer))
            if part is None:
                ax.axis("off")
                continue
            # Stacked: the bar's height is every weight in the bin, its blue part the kept ones. Steps, one
            # artist per layer, rather than a bar each: 40 bins × 8 layers × the series are thousands of bars.
            edges = np.append(part["low"].to_numpy(), part["high"].to_numpy()[-1])
            kept_counts = part["kept"].to_numpy()
            ax.stairs(kept_counts, edges, fill=True, color="C0", label="kept")
            ax.stairs(kept_counts + part["pruned"].to_numpy(), edges, baseline=kept_counts, fill=True,
                      color="lightgrey", label="pruned")
            kept = part["kept"].sum()
            ax.set_title(f"{series} {layer}\n{100 * (1 - kept / (kept + part['pruned'].sum())):.1f}% sparse",
                         fontsize=8)
            ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=7)
    figure.supxlabel("initial weight value")
    figure.tight_layout()
    return figure


FIGURES = {
    "accuracy_vs_sparsity": accuracy_vs_sparsity,
    "cost_vs_sparsity": cost_vs_sparsity,
    "interpolation_curves": interpolation_curves,
    "instability_vs_sparsity": instability_vs_sparsity,
    "landscapes": landscapes,
    "sharpness_vs_sparsity": sharpness_vs_sparsity,
    "kept_weights": kept_weights,
}
