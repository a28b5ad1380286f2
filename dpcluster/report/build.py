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
        figure = make(data)
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
    page = out / "report.html"
    write_atomic(page, lambda handle: handle.write(_page(folder, table, images).encode()))
    return table, [*written, csv, page]


def _page(folder: Path, table: pd.DataFrame, images: dict[str, bytes]) -> str:
    sections = []
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
