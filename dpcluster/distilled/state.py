"""Checkpoints of an iterative distillation: tensors, optimizers and random generators, saved every so often
and restored so a stopped distillation resumes where it was (``weights_only`` loading; atomic saves).

A state carries a fingerprint of the run that made it (data, model, settings, seed); resuming a state of
another run is refused, since its images would silently continue under different settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dpcluster.atomic import torch_save_atomic
from dpcluster.errors import UserError

VERSION = 1


class IterationState:
    """Saves and restores named objects: tensors (in place), optimizers and generators."""

    def __init__(self, path: Path | str | None, objects: dict[str, Any], fingerprint: Any = None):
        self.path = Path(path) if path is not None else None
        self.objects, self.fingerprint = objects, fingerprint

    def save(self, iteration: int, **extra: Any) -> None:
        """Save every object, plus ``extra`` plain values (lists, numbers) returned by :meth:`resume`."""
        if self.path is None:
            return
        payload: dict[str, Any] = {"version": VERSION, "fingerprint": self.fingerprint, "iteration": iteration,
                                   "extra": extra}
        for name, obj in self.objects.items():
            if isinstance(obj, torch.Tensor):
                payload[name] = obj.detach().cpu()
            elif isinstance(obj, torch.Generator):
                payload[name] = obj.get_state()
            else:
                payload[name] = obj.state_dict()
        torch_save_atomic(payload, self.path)

    def resume(self) -> tuple[int, dict[str, Any]]:
        """The iteration to start at and the saved extras: (0, {}), or the saved ones after restoring every object."""
        if self.path is None or not self.path.exists():
            return 0, {}
        try:
            payload = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as error:  # noqa: BLE001 - any unreadable state gets the same advice
            raise UserError(f"{self.path}: unreadable distillation checkpoint ({type(error).__name__}); "
                            f"delete it to start over") from None
        if not isinstance(payload, dict) or payload.get("version") != VERSION \
                or payload.get("fingerprint") != self.fingerprint:
            raise UserError(f"{self.path}: a distillation checkpoint of another run (other data, model, settings "
                            f"or seed) or of another version; delete it to start afresh")
        with torch.no_grad():
            for name, obj in self.objects.items():
                if isinstance(obj, torch.Tensor):
                    obj.copy_(payload[name])
                elif isinstance(obj, torch.Generator):
                    obj.set_state(payload[name])
                else:
                    obj.load_state_dict(payload[name])
        return int(payload["iteration"]), payload["extra"]
