"""The registries of named families (distillers, distilled-set formats, backends, pair analyses): the CLI reads
its choices and help from them, an entry registered elsewhere (here, in a test module) is usable everywhere, and
the distilled package has no import cycle."""

from __future__ import annotations

import ast
import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dpcluster.cli.main import main
from dpcluster.distilled.registry import (DISTILLER_REGISTRY, SET_FORMATS, Distiller, SetFormat, distiller_names,
                                          format_names, get_distiller, source_names)
from dpcluster.specs import DistilledSpec, ExperimentSpec, ModelSpec
from dpcluster.sweeps.backend_registry import BACKENDS, BackendEntry, backend_names, get_backend
from dpcluster.sweeps.spec import SweepSpec

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def registered(registry, entry):
    """``entry`` in ``registry`` for the duration (and gone afterwards, so other tests see the built-ins only)."""
    registry.names()  # the built-ins first, as anyone asking would find them
    registry.register(entry)
    try:
        yield entry
    finally:
        registry._items.pop(entry.name, None)


def _help(capsys, *command) -> str:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def _choices(command: str, option: str) -> list[str]:
    """The choices the CLI offers for ``option`` of ``command`` (the help text wraps them by terminal width)."""
    from dpcluster.cli.main import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    action = next(a for a in commands.choices[command]._actions if option in a.option_strings)
    return list(action.choices)


def test_every_registered_name_is_in_the_cli_help(capsys):
    run, distill, sweep = _help(capsys, "run"), _help(capsys, "distill"), _help(capsys, "sweep")
    for name in distiller_names():
        assert f"{name}: {get_distiller(name).summary}" in run and get_distiller(name).summary in distill
    assert "{" + ",".join(distiller_names()) + "}" in run and "{" + ",".join(distiller_names()) + "}" in distill
    assert "{" + ",".join(format_names()) + "}" in run
    assert "{" + ",".join(backend_names()) + "}" in sweep
    for name in backend_names():
        assert f"{name}: {get_backend(name).summary}" in sweep
    assert source_names() == (*distiller_names(), "file")


def test_the_cached_sets_keep_their_keys():
    # A distiller's version is part of every cache key of its sets: changing it re-distils every cached set.
    assert (get_distiller("dm").version, get_distiller("mtt").version) == (3, 2)
    assert [get_distiller(n).settings for n in ("dm", "mtt")] == ["dm", "mtt"]


def _first_images(request):
    """A distiller for tests: the first ``images_per_class`` training images of every class."""
    from dpcluster.distilled.format import DistilledSet

    data, ipc = request.data, request.spec.images_per_class
    labels = data.train_labels()
    chosen = torch.cat([torch.nonzero(labels == c).flatten()[:ipc] for c in range(data.num_classes)])
    if request.progress is not None:
        request.progress(1, 1, 0.0)
    return DistilledSet(images=data.train.x[chosen], labels=labels[chosen], source_dataset=data.name,
                        images_per_class=ipc, method="first", mean=data.mean, std=data.std, learned_lr=None,
                        num_classes=data.num_classes, zca=data.zca)


def test_a_distiller_registered_elsewhere_is_usable(digits, tmp_path, capsys):
    from dpcluster.distilled import distill_key, obtain_distilled_set
    from dpcluster.errors import SpecError

    entry = Distiller("first", "the first images of every class", f"{__name__}:_first_images", version=1)
    with pytest.raises(SpecError, match="must be one of dm, mtt, file"):
        DistilledSpec(source="first")
    with registered(DISTILLER_REGISTRY, entry):
        spec = DistilledSpec(source="first", images_per_class=2)
        assert ExperimentSpec(distilled=spec).distilled.source == "first"
        model = ModelSpec(width=8, depth=2)
        calls = []
        made = obtain_distilled_set(spec, digits, model, tmp_path, "cpu", progress=lambda *a: calls.append(a))
        assert calls == [(1, 1, 0.0)] and made.method == "first" and len(made) == 2 * digits.num_classes
        key = distill_key(spec, digits, model)
        assert [p.name for p in tmp_path.iterdir()] == [f"first-digits-ipc2-{key}"]
        assert distill_key(spec.replace(seed=1), digits, model) != key
        again = obtain_distilled_set(spec, digits, model, tmp_path, "cpu", progress=lambda *a: calls.append(a))
        assert len(calls) == 1 and torch.equal(again.images, made.images)  # from the cache
        assert "first: the first images of every class" in _help(capsys, "run")
        # A distiller without settings has no iteration budget for `dpcluster distill --iterations`.
        assert main(["distill", "--method", "first", "--iterations", "3", "--out", str(tmp_path / "d")]) == 2
        assert "--iterations: distiller first has no iteration budget" in capsys.readouterr().err


def _read_pair_file(path, data, options):
    """A set format for tests: one torch file holding {"images", "labels"} in ``data``'s normalization."""
    from dpcluster.distilled.format import DistilledSet, load_tensor_file

    saved = load_tensor_file(path)
    return DistilledSet(images=saved["images"], labels=saved["labels"], source_dataset=data.name,
                        images_per_class=int(torch.bincount(saved["labels"])[0]), method="pair",
                        mean=data.mean, std=data.std, learned_lr=None, num_classes=data.num_classes, zca=options.zca)


def test_a_set_format_registered_elsewhere_is_usable(digits, tmp_path, capsys):
    from dpcluster.distilled import obtain_distilled_set

    labels = torch.arange(digits.num_classes).repeat_interleave(3)
    images = torch.randn(len(labels), *digits.input_shape)
    torch.save({"images": images, "labels": labels}, tmp_path / "set-ipc3.pt")
    entry = SetFormat("pair", "one torch file of images and labels", f"{__name__}:_read_pair_file")
    with registered(SET_FORMATS, entry):
        spec = DistilledSpec(source="file", format="pair", path=str(tmp_path / "set-ipc{ipc}.pt"), images_per_class=3)
        got = obtain_distilled_set(spec, digits, ModelSpec(), tmp_path / "cache", "cpu")
        assert got.method == "pair" and torch.equal(got.labels, labels) and torch.allclose(got.images, images)
        assert "pair" in _choices("run", "--distilled-format") and "pair" in _choices("evaluate-set", "--format")


class _Recording:
    """A backend for tests: runs every job in this process, and remembers what it ran."""

    made: list = []

    def __init__(self, local):
        self.local, self.name, self.resolves_dependencies, self.ran = local, "inline", False, []

    def submit(self, call, after=()):
        self.ran.append(call.job.kind)
        self.local.submit(call, after)

    def wait(self):
        return self.local.wait()

    def outstanding(self):
        return self.local.outstanding()


def _make_inline(args, out, console, plain):
    from dpcluster.sweeps.backends import LocalBackend

    backend = _Recording(LocalBackend())
    _Recording.made.append((args.device, Path(out), backend))
    return backend


def test_a_backend_registered_elsewhere_is_usable(capsys, tmp_path):
    spec = tmp_path / "sweep.toml"
    SweepSpec.from_dict({"name": "x", "methods": ["dense"], "seeds": [0],
                         "base": {"model": {"width": 8}, "training": {"epochs": 1}}}).save(spec)
    out = tmp_path / "out"
    entry = BackendEntry("inline", "this process, for tests", f"{__name__}:_make_inline")
    with registered(BACKENDS, entry):
        assert "inline: this process, for tests" in _help(capsys, "sweep")
        # Another backend's options stay refused, in the same words.
        assert main(["sweep", str(spec), "--out", str(out), "--backend", "inline", "--wait"]) == 2
        assert "--wait: only for --backend slurm" in capsys.readouterr().err
        assert main(["sweep", str(spec), "--out", str(out), "--backend", "inline", "--device", "cpu"]) == 0
        printed = capsys.readouterr().out
    (device, where, backend), = _Recording.made
    assert (device, where) == ("cpu", out) and backend.ran == ["validate"]  # the aggregate is settled here
    assert "ended: validate-dense-s0-digits-convnet-r0" in printed  # it does not run jobs here: each end is said
    assert list((out / "results").rglob("*.parquet"))


def test_backend_options_are_options_of_sweep_and_each_has_one_owner():
    from dpcluster.cli.main import build_parser

    sweep = build_parser()._subparsers._group_actions[0].choices["sweep"]
    flags = {flag for action in sweep._actions for flag in action.option_strings}
    owned = [flag for name in backend_names() for flag in get_backend(name).owns]
    assert set(owned) <= flags and len(owned) == len(set(owned))
    assert get_backend("slurm").owns[:2] == ("--stage", "--setup") and get_backend("ray").owns == ("--address",)


def test_the_pair_analyses_are_the_kinds_that_say_so():
    from dpcluster.sweeps.jobs import get_kind
    from dpcluster.sweeps.kinds.analysis_common import pair_analyses

    assert pair_analyses() == ("stability", "landscape", "sharpness")
    assert all(get_kind(name).analysis for name in pair_analyses())


def _distilled_modules() -> dict[str, Path]:
    package = ROOT / "dpcluster" / "distilled"
    modules = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def test_the_distilled_package_has_no_import_cycle_and_imports_no_private_name():
    modules = _distilled_modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    private = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):  # function-level imports included
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                if node.module.startswith("dpcluster"):
                    private += [f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            edges[name] |= {t for t in targets if t in modules and t != name}
    assert not private

    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges[name]):
            assert state.get(target) != "open", " -> ".join([*path, target])
            if target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(modules):
        if name not in state:
            visit(name, [name])


def test_naming_the_families_loads_no_torch():
    code = ("import sys\n"
            "from dpcluster.cli.main import build_parser\n"
            "from dpcluster.specs import DistilledSpec\n"
            "from dpcluster.distilled.registry import distiller_names, format_names\n"
            "from dpcluster.sweeps.backend_registry import backend_names\n"
            "build_parser(); DistilledSpec(source='file', path='x', format='png')\n"
            "print(distiller_names(), format_names(), backend_names())\n"
            "assert not {'torch', 'submitit', 'ray'} & set(sys.modules), sorted({'torch', 'submitit', 'ray'} & set(sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
