"""Writing files so that a reader sees all of one or none of it: write a temporary sibling, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        # mkstemp makes the file private (0600); a result should be as readable as any file written here
        # (a research group shares a sweep folder), so give it the permissions the umask allows.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def torch_save_atomic(obj: Any, path: Path) -> None:
    import torch  # here, not at the top: the sweep's bookkeeping writes files too and must not load torch

    write_atomic(path, lambda handle: torch.save(obj, handle))
