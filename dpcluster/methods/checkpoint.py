"""Per-round checkpoints, so a run that is stopped resumes from its last finished round.

Saved with torch.save to a temporary name and renamed; loaded with ``weights_only=True`` (it holds only
tensors, numbers, strings, lists and dicts).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dpcluster.atomic import torch_save_atomic
from dpcluster.errors import UserError
from dpcluster.pruning.masks import Mask
from dpcluster.results.records import RoundRecord

State = dict[str, torch.Tensor]


@dataclass
class Carry:
    """A finished real-data training of the current mask, kept because it is also the next round's inner loop."""

    state: State
    seconds: float
    examples: int


@dataclass
class Checkpoint:
    experiment_id: str
    round: int
    mask: Mask
    # Every parameter and buffer at the rewind point, once real-data training has reached it.
    rewind_state: State | None = None
    carry: Carry | None = None
    records: list[RoundRecord] = field(default_factory=list)

    def save(self, path: Path) -> None:
        payload = {
            "experiment_id": self.experiment_id,
            "round": self.round,
            "mask": self.mask,
            "rewind_state": self.rewind_state,
            "carry": dataclasses.asdict(self.carry) if self.carry else None,
            "records": [r.as_row() for r in self.records],
        }
        torch_save_atomic(payload, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            payload = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as error:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
            raise UserError(f"checkpoint {path} is unreadable ({type(error).__name__}); delete it to start over") \
                from None
        carry = payload["carry"]
        return cls(
            experiment_id=payload["experiment_id"],
            round=payload["round"],
            mask=payload["mask"],
            rewind_state=payload["rewind_state"],
            carry=Carry(**carry) if carry else None,
            records=[RoundRecord.from_row(r) for r in payload["records"]],
        )
