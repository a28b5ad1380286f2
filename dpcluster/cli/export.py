"""``dpcluster export DIR``: one level of a sweep or run folder as a ticket other tools load (torch.nn.utils.prune
state dicts, safetensors, open_lth's level layout) with ``ticket.json``."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    from dpcluster.export.registry import format_names

    names = format_names()
    p = commands.add_parser("export", help="write one level as a lottery ticket other tools load",
                            description="Pick a level of a sweep or run folder (by --method, --seed and the nearest "
                                        "--sparsity, or by --job) and write its mask, initial weights, rewind "
                                        "point and trained network in each format, with ticket.json.")
    p.add_argument("dir", type=Path, help="sweep or run folder")
    p.add_argument("--method", help="the level's method (dense, imp, distilled, hybrid, random)")
    p.add_argument("--seed", type=int)
    p.add_argument("--sparsity", type=float, help="fraction pruned, e.g. 0.9 (the nearest level is taken, and said)")
    p.add_argument("--rewind", help="rewind point, where the folder has several (e.g. 0ep, 1ep)")
    p.add_argument("--ipc", type=int, help="distilled-set size, where the folder has several")
    p.add_argument("--dataset", help="data set, where the folder has several")
    p.add_argument("--model", help="network, where the folder has several")
    p.add_argument("--job", help="the level's validation job, by id or name (instead of the options above)")
    p.add_argument("--formats", default=",".join(names), help=f"comma-separated, from {', '.join(names)} (default all)")
    p.add_argument("--out", type=Path, help="the ticket's folder (default DIR/tickets/<level>); must not exist")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from rich.console import Console

    from dpcluster.cli.options import writable_folder
    from dpcluster.errors import UserError
    from dpcluster.export.registry import format_names, get_format
    from dpcluster.export.ticket import LevelChoice, load_ticket, pick_level

    formats = [name.strip() for name in args.formats.split(",") if name.strip()]
    unknown = [name for name in formats if name not in format_names()]
    if unknown or not formats:
        raise UserError(f"--formats: unknown {', '.join(unknown) or '(none given)'}; known: "
                        f"{', '.join(format_names())}")
    job, note = pick_level(args.dir, LevelChoice(args.method, args.seed, args.sparsity, args.rewind, args.ipc,
                                                 args.dataset, args.model, args.job))
    out = args.out or args.dir / "tickets" / job.name
    if out.exists():
        raise UserError(f"--out {out}: already exists; remove it or choose another folder")
    writable_folder(out.parent, "--out")
    ticket = load_ticket(args.dir, job)
    console = Console(stderr=True)
    if note:
        console.print(note)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the destination and renamed into place: an export is whole or absent.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        written = {}
        for name in formats:
            files = get_format(name).write(ticket, staging / name)
            written[name] = [str(path.relative_to(staging)) for path in files]
        (staging / "ticket.json").write_text(json.dumps(ticket.description(written), indent=2, default=str) + "\n")
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    r = ticket.record
    accuracy = "" if r.test_accuracy is None else f", test accuracy {100 * r.test_accuracy:.2f}%"
    console.print(f"{job.name}: {r.method}, seed {r.seed}, round {r.round}, {100 * r.sparsity:.1f}% sparse"
                  f"{accuracy}, starts from {'the rewind point' if ticket.rewind is not None else 'initialisation'}")
    print(out)
    return 0
