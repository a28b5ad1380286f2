"""Checkpoints of an iterative distillation: tensors, optimizers and random generators, saved every so often
and restored so a stopped distillation resumes where it was (``weights_only`` loading; atomic saves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dpcluster.atomic import torch_save_atomic
from dpcluster.errors import UserError


class IterationState:
    """Saves and restores named objects: tensors (in place), optimizers and generators."""

    def __init__(self, path: Path | None, objects: dict[str, Any]):
        self.path, self.objects = path, objects

    def save(self, iteration: int) -> None:
        if self.path is None:
            return
        payload: dict[str, Any] = {"iteration": iteration}
        for name, obj in self.objects.items():
            if isinstance(obj, torch.Tensor):
                payload[name] = obj.detach().cpu()
            elif isinstance(obj, torch.Generator):
                payload[name] = obj.get_state()
            else:
                payload[name] = obj.state_dict()
        torch_save_atomic(payload, self.path)

    def resume(self) -> int:
        """The iteration to start at: 0, or the saved one after restoring every object."""
        if self.path is None or not self.path.exists():
            return 0
        try:
            payload = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as error:  # noqa: BLE001 - any unreadable state gets the same advice
            raise UserError(f"{self.path}: unreadable distillation checkpoint ({type(error).__name__}); "
                            f"delete it to start over") from None
        with torch.no_grad():
            for name, obj in self.objects.items():
                if isinstance(obj, torch.Tensor):
                    obj.copy_(payload[name])
                elif isinstance(obj, torch.Generator):
                    obj.set_state(payload[name])
                else:
                    obj.load_state_dict(payload[name])
        return int(payload["iteration"])

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
