"""Unpickling files from outside (CIFAR's python-format batches) without letting them run code.

Pickle is a program: a crafted file can name any importable callable (``os.system``) and have the unpickler call
it. CIFAR's batches are pickles, so they are read with an unpickler that builds only what the real files hold —
dicts, lists, strings, bytes, numbers and numpy arrays — and refuses any other global with one line naming the
file and what it asked for.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from dpcluster.errors import UserError

# What a numpy array (and a numpy scalar) is rebuilt from, under numpy 1's module names (the official files, pickled
# by Python 2) and numpy 2's; and what Python 3's pickler uses for an array's bytes under protocol 2.
ALLOWED = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"), ("builtins", "bytes"), ("__builtin__", "bytes"),
})


class _DataOnly(pickle.Unpickler):
    def __init__(self, handle, path: Path):
        super().__init__(handle, encoding="latin1")  # Python 2's str, as torchvision reads CIFAR
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise UserError(f"{self.path}: refused to unpickle {module}.{name}: a data file may hold only dicts, "
                            f"lists, strings, numbers and numpy arrays (this one would run code when loaded)")
        return super().find_class(module, name)


def load_data_pickle(path: Path):
    """The data pickled in ``path``, built only from plain values and numpy arrays (see the module's docstring);
    anything else is a one-line UserError naming the file."""
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            return _DataOnly(handle, path).load()
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - any unreadable pickle gets the same one line
            raise UserError(f"{path}: not a readable pickle (corrupt or not torchvision's python format): "
                            f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}") from None
