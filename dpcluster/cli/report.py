"""``dpcluster report DIR``: the papers' figures, a summary table and an HTML page from a sweep or run folder."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("report", help="figures, a summary table and an HTML page from a sweep or run folder",
                            description="Read a sweep folder (or dpcluster run's --out) and write PNG and SVG "
                                        "figures, summary.csv and a self-contained report.html.")
    p.add_argument("dir", type=Path, help="sweep or run folder")
    p.add_argument("--out", type=Path, help="where the report goes (default DIR/report)")
    p.set_defaults(handler=handle)


def _cell(value, scale: float = 1.0, digits: int = 1) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * scale:.{digits}f}"


def _print_sets(console: Console, rows) -> None:
    from dpcluster.results.set_evaluations import summary

    view = Table(title="distilled sets: test accuracy % over fresh networks")
    for name in ("data set / model", "set", "per class", "labels", "networks", "set %", "random subset %", "gain"):
        view.add_column(name, justify="left" if name in ("data set / model", "set") else "right")
    for row in summary(rows).to_dict("records"):
        view.add_row(escape(f"{row['dataset']} / {row['model']}"), escape(f"{row['set']} ({row['format']})"),
                     str(row["images_per_class"]), row["labels"], str(row["set_networks"]),
                     f"{_cell(row['set_mean'], 100)} ± {_cell(row['set_std'], 100)}",
                     f"{_cell(row['subset_mean'], 100)} ± {_cell(row['subset_std'], 100)}",
                     _cell(row["gain"], 100))
    console.print(view)


def handle(args: argparse.Namespace) -> int:
    from dpcluster.report.build import write_report

    from dpcluster.cli.options import writable_folder

    from dpcluster.report.tables import load

    out = writable_folder(args.out or args.dir / "report", "--out")
    data = load(args.dir)
    table, written = write_report(args.dir, out, data)
    console = Console()
    if not data.set_evaluations.empty:
        _print_sets(console, data.set_evaluations)
    extra = {"instability": ("instability %", 100, 2), "top_eigenvalue": ("λ max", 1, 3),
             "hessian_trace": ("trace", 1, 1)}
    extra = {column: how for column, how in extra.items() if column in table.columns}
    for (dataset, model), rows in table.groupby(["dataset", "model"], sort=False):
        view = Table(title=f"{dataset} / {model}: mean over seeds")
        for name in ("method", "sparsity %", "accuracy %", "seeds", "time-to-mask s",
                     *(label for label, _, _ in extra.values())):
            view.add_column(name, justify="left" if name == "method" else "right")
        for row in rows.to_dict("records"):
            accuracy = _cell(row["accuracy_mean"], 100) + (f" ± {_cell(row['accuracy_std'], 100)}"
                                                           if row["seeds"] > 1 else "")
            # Escaped: a grid point's "[key=value]" would read as rich markup and vanish.
            view.add_row(escape(row["series"]), _cell(row["sparsity"], 100), accuracy, str(row["seeds"]),
                         _cell(row["time_to_mask_seconds"]),
                         *(_cell(row[column], scale, digits) for column, (_, scale, digits) in extra.items()))
        console.print(view)
    console.print(f"wrote {len(written)} files to {out}: report.html, summary.csv, "
                  f"{sum(p.suffix == '.png' for p in written)} figures (PNG and SVG)")
    return 0
