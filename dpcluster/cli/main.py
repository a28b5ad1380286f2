"""``dpcluster``: entry point. User mistakes end as one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import errno
import os
import sys

# Before pyarrow loads (nothing above imports it): its default allocator, mimalloc, ran reading a million result
# rows at half speed in some processes on the machine the figures come from, glibc's malloc never did.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from dpcluster import __version__  # noqa: E402
from dpcluster.errors import UserError  # noqa: E402


# What the machine says when it cannot take a write: no space, over quota, read-only, no permission.
_ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own mistakes: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from dpcluster.cli import distill, evaluate_set, export, report, run, sweep, tune

    parser = _Parser(prog="dpcluster", description="Distilled pruning and IMP, from a laptop to a cluster.")
    parser.add_argument("--version", action="version", version=f"dpcluster {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run.add_parser(commands)
    distill.add_parser(commands)
    evaluate_set.add_parser(commands)
    sweep.add_parsers(commands)
    report.add_parser(commands)
    export.add_parser(commands)
    tune.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A factory of the user's (a network, a data set) in the folder dpcluster runs from is found, as `python -m`
    # would find it; appended, so it never shadows an installed package.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"dpcluster: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # The machine, not dpcluster: a full disk or quota, a read-only or vanished folder. Every file is written
        # to a temporary name and renamed, so nothing is left half-written.
        if error.errno not in _ENVIRONMENT:
            raise
        where = f" ({error.filename})" if error.filename else ""
        print(f"dpcluster: error: {error.strerror}{where}; nothing was left half-written: free the space or fix "
              f"the folder, then run the same command again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dpcluster: interrupted; run the same command again to resume from the last finished round",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
