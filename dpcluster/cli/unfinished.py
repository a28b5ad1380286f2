"""What the commands that run a sweep (``run``, ``sweep``) say about the jobs a run left undone."""

from __future__ import annotations

import argparse

RETRY_FAILED_HELP = ("also run the jobs that failed on every attempt they had (max_retries + 1); without it, they "
                     "do not start again")


def add_retry_failed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retry-failed", action="store_true", help=RETRY_FAILED_HELP)


def out_of_attempts(states, max_retries: int) -> list:
    """The failed jobs that used every attempt they had."""
    return [state for state in states if state.state == "failed" and state.attempts > max_retries]


def not_done_lines(states, max_retries: int, folder, each: bool = True) -> list[str]:
    """The failed jobs, one line each with the last error (``each``; a command that said them as they failed
    does not again), then what to do about the jobs not done."""
    lines = [f"failed: {state.name}: {state.error}" for state in states if state.state == "failed" and each]
    spent = out_of_attempts(states, max_retries)
    if spent:
        lines.append(f"{len(spent)} job(s) failed on all {max_retries + 1} attempt(s) they had and will not start "
                     f"again by themselves (logs under {folder}/logs): fix the cause, then run the same command with "
                     f"--retry-failed")
    if len(states) > len(spent):
        lines.append(f"{len(states) - len(spent)} job(s) not done (logs under {folder}/logs); run the same command "
                     f"again to retry")
    return lines
