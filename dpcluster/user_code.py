"""Code of the user's, named ``package.module:function`` (a network's or a data set's factory): found, and
called, with every failure one line naming it (``what`` is "model" or "data")."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from dpcluster.errors import UserError
from dpcluster.registry import resolve


IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_FACTORY_NAME = re.compile(rf"{IDENTIFIER}(\.{IDENTIFIER})*:{IDENTIFIER}")


def is_user_name(name: str) -> bool:
    """Whether ``name`` names code of the user's (``package.module:function``, or ``torchvision:NAME`` for a
    network) rather than a registered entry: registered names hold no colon."""
    return ":" in name


def check_factory_name(name: str, key: str) -> None:
    """``name`` has the form ``package.module:function`` (nothing is imported); else a SpecError naming ``key``."""
    from dpcluster.specs.base import check

    check(bool(_FACTORY_NAME.fullmatch(name)), key, f"expected package.module:function, got {name!r}")


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def user_function(name: str, what: str) -> Callable:
    """The function ``name`` names, imported; a UserError when its module does not import or has no such
    callable."""
    try:
        function = resolve(name)
    except ImportError as error:
        raise UserError(f"{what} {name}: cannot import {name.partition(':')[0]}: {first_line(str(error))} (is its "
                        f"package on PYTHONPATH?)") from None
    except AttributeError as error:
        raise UserError(f"{what} {name}: {error}") from None
    if not callable(function):
        raise UserError(f"{what} {name}: {name.partition(':')[2]} is not a function")
    return function


def call_user(name: str, what: str, args: tuple = (), kwargs: dict[str, Any] | None = None) -> Any:
    """``name``'s function called with ``args`` and ``kwargs``; whatever it raises becomes one line naming it."""
    function = user_function(name, what)
    try:
        return function(*args, **(kwargs or {}))
    except UserError as error:
        raise UserError(f"{what} {name}: {first_line(str(error))}") from None
    except Exception as error:  # noqa: BLE001 - the user's code: its failure is one line naming it
        raise UserError(f"{what} {name}: the factory raised {type(error).__name__}: {first_line(str(error))}") \
            from None


def submitting_pythonpath() -> tuple[str, ...]:
    """Where this process finds Python code of the user's, for the jobs it starts elsewhere (Slurm jobs, Ray
    workers) to find it too: PYTHONPATH's entries, made absolute, and the current folder, which ``python -m``
    (and ``dpcluster``) look in."""
    entries = [os.path.abspath(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    return tuple(dict.fromkeys([*entries, os.getcwd()]))
