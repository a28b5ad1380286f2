"""Writing a report: every figure as PNG and SVG, the summary as CSV, and one HTML page with the figures embedded
(so it opens from a laptop after ``scp`` of the one file)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from dpcluster.atomic import write_atomic
from dpcluster.report.figures import FIGURES
from dpcluster.report.tables import ReportData, load, summary
from dpcluster.results.set_evaluations import summary as set_summary

CAPTIONS = {name: " ".join(make.__doc__.split()) for name, make in FIGURES.items()}


def write_report(folder: Path, out: Path, data: ReportData | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """The report of ``folder`` (its ``data``, where the caller has read it already) into ``out``; returns the
    summary and the files written."""
    import matplotlib.pyplot as plt

    # Every mistake (no folder, no results) surfaces before anything is written.
    data = load(folder) if data is None else data
    out.mkdir(parents=True, exist_ok=True)
    written, images = [], {}
    for name, make in FIGURES.items():
        # A folder of set evaluations alone has no level to draw.
        figure = make(data) if not data.levels.empty else None
        if figure is None:
            continue
        for suffix in ("png", "svg"):
            path = out / f"{name}.{suffix}"
            write_atomic(path, lambda handle: figure.savefig(handle, format=suffix, dpi=120))
            written.append(path)
        plt.close(figure)
        images[name] = (out / f"{name}.png").read_bytes()
    table = summary(data)
    csv = out / "summary.csv"
    write_atomic(csv, lambda handle: handle.write(table.to_csv(index=False).encode()))
    sets = set_summary(data.set_evaluations) if not data.set_evaluations.empty else None
    if sets is not None:
        sets_csv = out / "set_evaluations.csv"
        write_atomic(sets_csv, lambda handle: handle.write(sets.to_csv(index=False).encode()))
        written.append(sets_csv)
    page = out / "report.html"
    write_atomic(page, lambda handle: handle.write(_page(folder, table, images, sets).encode()))
    return table, [*written, csv, page]


def _sets_section(sets: pd.DataFrame) -> str:
    """The set evaluations: per set, mean ± std test accuracy of its networks and of random real subsets."""
    def cell(mean, std) -> str:
        return "" if pd.isna(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"

    view = pd.DataFrame({
        "data set": sets["dataset"], "model": sets["model"], "set": sets["set"], "format": sets["format"],
        "per class": sets["images_per_class"], "labels": sets["labels"], "epochs": sets["epochs"],
        "networks": sets["set_networks"], "set %": [cell(m, s) for m, s in zip(sets["set_mean"], sets["set_std"])],
        "random subset %": [cell(m, s) for m, s in zip(sets["subset_mean"], sets["subset_std"])],
        "gain (points)": [("" if pd.isna(g) else f"{100 * g:+.1f}") for g in sets["gain"]]})
    return ("<h2>distilled sets</h2><p>Fresh networks trained on each set (its augmentation and learning rate) and "
            "on random real subsets of its size trained the same way: test accuracy, mean ± std over networks.</p>"
            + view.to_html(index=False))


def _page(folder: Path, table: pd.DataFrame, images: dict[str, bytes], sets: pd.DataFrame | None = None) -> str:
    sections = [_sets_section(sets)] if sets is not None else []
    for name, png in images.items():
        encoded = base64.b64encode(png).decode()
        sections.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2>"
                        f"<p>{html.escape(CAPTIONS[name])}</p>"
                        f'<img alt="{name}" src="data:image/png;base64,{encoded}">')
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dpcluster report: {html.escape(str(folder))}</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:2em auto}}img{{max-width:100%}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}</style>
</head><body>
<h1>dpcluster report</h1><p>{html.escape(str(folder))}</p>
<h2>summary</h2>{table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")}
{''.join(sections)}
</body></html>
"""
