"""DC's, DSA's and DM's results file (VICO-UoE/DatasetCondensation): ``res_<method>_<dataset>_<model>_<ipc>ipc.pt``,
``{'data': [[image_syn, label_syn], ...], 'accs_all_exps': {model: [accuracy, ...]}}``, one set per experiment
(five by default), each with int64 labels grouped by class and images normalized as its ``get_dataset`` does."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dpcluster.distilled.format import DistilledSet, load_tensor_file, numpy_scalars
from dpcluster.distilled.readers.common import check_zca, checked_images, checked_labels, describe, stored_set
from dpcluster.distilled.registry import ReadOptions
from dpcluster.errors import UserError

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle


def _results_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob("res_*.pt")) if path.is_dir() else []
    if len(found) != 1:
        what = "no res_*.pt" if not found else f"{len(found)} res_*.pt files ({', '.join(f.name for f in found)})"
        raise UserError(f"{path}: {what}; name the file in distilled.path")
    return found[0]


def _mean_accuracies(accuracies: object, experiments: int) -> str:
    """Each experiment's mean test accuracy from ``accs_all_exps`` (its evaluations, experiment by experiment),
    to help choose an entry; empty when the file holds none."""
    if not isinstance(accuracies, dict) or len(accuracies) != 1:
        return ""
    (model, values), = accuracies.items()
    if not isinstance(values, list) or not values or len(values) % experiments:
        return ""
    per = len(values) // experiments
    means = [sum(float(v) for v in values[k * per:(k + 1) * per]) / per for k in range(experiments)]
    return f" ({model} accuracies: " + ", ".join(f"{k}: {100 * m:.1f}%" for k, m in enumerate(means)) + ")"


def import_dc(path: str | Path, data: "DataBundle", options: ReadOptions = ReadOptions()) -> DistilledSet:
    """The set ``options.entry`` of DC's results file ``path`` (or the only ``res_*.pt`` in folder ``path``);
    without an entry, the file must hold one set. Images are taken as in ``options.normalization``, by default
    DC's constants for ``data``; DC, DSA and DM never ZCA-whiten."""
    from dpcluster.distilled.formats.dc import DC

    file = _results_file(Path(path))
    saved = load_tensor_file(file, allowed=numpy_scalars())
    entries = saved.get("data") if isinstance(saved, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{file}: not a DC/DSA/DM results file (expected a dict whose 'data' lists "
                        f"[image_syn, label_syn] pairs), got {describe(saved)}")
    if options.entry is None and len(entries) > 1:
        raise UserError(f"{file}: holds {len(entries)} sets, one per experiment; choose one with distilled.entry = "
                        f"0..{len(entries) - 1}{_mean_accuracies(saved.get('accs_all_exps'), len(entries))}")
    entry = 0 if options.entry is None else options.entry
    if entry >= len(entries):
        raise UserError(f"{file}: distilled.entry = {entry}, but the file holds {len(entries)} sets "
                        f"(0..{len(entries) - 1})")
    pair = entries[entry]
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise UserError(f"{file}: data[{entry}] is not an [image_syn, label_syn] pair, got {describe(pair)}")
    where = f"{file} data[{entry}]"
    images = checked_images(pair[0], data, where)
    labels = checked_labels(pair[1], len(images), data, where, options.labels, logits=False)
    check_zca(file, options.zca, data, styles=(), whose="DC, DSA and DM")
    return stored_set(images, labels, data, options, method="dc", upstream=DC.upstream, origin=file,
                      labels_where=where, extra={"entry": entry})
