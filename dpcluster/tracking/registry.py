"""Trackers by name, and ``--track NAME[:TARGET]`` read into a :class:`Track`. Naming a tracker imports nothing
of its package: its code is named by a ``package.module:function`` path, loaded when a job opens it."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dpcluster.errors import UserError
from dpcluster.registry import Registry, import_package


class Sink(Protocol):
    """An open tracker: metrics of named runs, each at a step."""

    def log(self, run: str, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Tracker:
    name: str
    # One line for help texts and the README.
    summary: str
    # ``package.module:function`` opening it: (Track, project: str) -> Sink, ``project`` naming the sweep.
    open: str
    # The module it needs (its pip package is named in the error when it is missing).
    needs: str
    # Where it writes without a TARGET: this folder under the output folder.
    default: str


TRACKERS: Registry[Tracker] = Registry("tracker", lambda: import_package("dpcluster.tracking.trackers"))
register = TRACKERS.register
get_tracker = TRACKERS.get
tracker_names = TRACKERS.names


@dataclass(frozen=True)
class Track:
    """One ``--track``: the tracker's name and its target (a folder, a URI), made absolute where it is a path."""

    name: str
    target: str

    def as_dict(self) -> dict:
        return {"name": self.name, "target": self.target}


def parse_track(text: str, out: Path) -> Track:
    """``NAME`` or ``NAME:TARGET`` (``tensorboard:runs/tb``, ``mlflow:http://host:5000``); a relative folder is
    taken from the working folder, and no target is the tracker's default under ``out``. An unknown tracker or
    one whose package is not installed is one line."""
    name, _, target = text.partition(":")
    if name not in tracker_names():
        raise UserError(f"--track {text}: unknown tracker {name!r}; known: {', '.join(tracker_names())}")
    tracker = get_tracker(name)
    if importlib.util.find_spec(tracker.needs) is None:
        raise UserError(f"--track {name}: needs the {tracker.needs} package (pip install {tracker.needs}, or "
                        f"pip install 'dpcluster[track]' for every tracker)")
    if not target:
        target = str((Path(out) / tracker.default).absolute())
    elif "://" not in target:  # a folder (not a URI such as http://host:5000 or sqlite:///mlflow.db)
        target = str(Path(target).expanduser().absolute())
    return Track(name, target)


def open_sinks(tracks: list[Track], project: str) -> list[Sink]:
    from dpcluster.registry import resolve

    return [resolve(get_tracker(track.name).open)(track, project) for track in tracks]


def write_tracks(path: Path, tracks: list[Track]) -> None:
    """What the folder's jobs track to (``SweepLayout.tracking_file``), replaced atomically; no tracks: none."""
    import json

    from dpcluster.atomic import write_atomic

    text = json.dumps([track.as_dict() for track in tracks], indent=2).encode()
    write_atomic(path, lambda handle: handle.write(text))


def read_tracks(path: Path) -> list[Track]:
    """The tracks a job opens: those of the folder's ``tracking.json`` (none without one)."""
    import json

    if not path.exists():
        return []
    return [Track(entry["name"], entry["target"]) for entry in json.loads(path.read_text())]
