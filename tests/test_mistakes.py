"""Every user mistake and every failure of the machine is one line on stderr, exit code 2, with nothing
half-written: the probes of a hostile user, each as a command (``dpcluster.cli.main``), most of them in-process."""

import json
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from dpcluster.cli.main import main
from dpcluster.sweeps.spec import SweepSpec

TINY = {"name": "tiny", "methods": ["dense"], "seeds": [0],
        "base": {"model": {"width": 8}, "training": {"epochs": 1}}}
RUN = ["--device", "cpu", "--methods", "dense", "--seeds", "0", "--epochs", "1"]


def one_line(capsys, argv, *expected) -> str:
    """``dpcluster ARGV`` ends with exit code 2 and one line on stderr holding every piece of ``expected``."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and err.startswith("dpcluster: error:"), err
    for piece in expected:
        assert piece in err, (piece, err)
    return err


def sweep_file(tmp_path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


# -- specs ----------------------------------------------------------------------------------------------------


def test_a_binary_spec_is_one_line(capsys, tmp_path):
    binary = tmp_path / "spec.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    one_line(capsys, ["run", "--config", binary, "--out", tmp_path / "out", *RUN], "not a text file")
    one_line(capsys, ["sweep", binary, "--out", tmp_path / "out"], "not a text file")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, key", [
    ('name = "x"\nimages_per_class = [10]\n[sets]\n10 = 5\n', "sets.10"),
    ('name = "x"\n[data]\ndigits = 3\n', "data.digits"),
    ('name = "."\n', "name"),
    ('name = ".."\n', "name"),
    ('name = "x"\nseeds = [9223372036854775808]\n', "seeds[0]"),
    ('name = "x"\n[base.training]\nlr = inf\n', "base.training.lr"),
    ('name = "x"\n[base.training]\nweight_decay = inf\n', "base.training.weight_decay"),
    ('name = "x"\n[base.distilled_training]\nlr = nan\n', "base.distilled_training.lr"),
])
def test_sweep_spec_mistakes_are_one_line(capsys, tmp_path, text, key):
    one_line(capsys, ["sweep", sweep_file(tmp_path, text), "--out", tmp_path / "out"], key)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--methods", ""], "--methods"),
    (["--seeds", ""], "--seeds"),
    (["--rounds", "0"], "--rounds"),
])
def test_empty_or_zero_options_are_mistakes_not_defaults(capsys, tmp_path, argv, expected):
    one_line(capsys, ["run", "--out", tmp_path / "out", "--device", "cpu", *argv], expected)
    assert not (tmp_path / "out").exists()


def test_a_model_that_cannot_learn_or_fit_is_refused_before_anything_runs(capsys, tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("[model]\ndepth = 8\n")
    one_line(capsys, ["run", "--config", deep, "--out", tmp_path / "out", *RUN], "model.depth = 8",
             "1x1 maps", "at most depth 3 here")
    wide = tmp_path / "wide.toml"
    wide.write_text("[model]\nwidth = 100000\n")
    one_line(capsys, ["run", "--config", wide, "--out", tmp_path / "out", *RUN], "width 100000", "GiB to train")
    assert not (tmp_path / "out").exists()


def test_a_training_whose_loss_goes_nan_stops_with_why():
    import torch

    from dpcluster.data import load_data
    from dpcluster.models import build_model
    from dpcluster.specs import DataSpec, ModelSpec, TrainingSpec
    from dpcluster.training.loop import Diverged, train

    data = load_data(DataSpec())
    torch.manual_seed(0)
    model = build_model(ModelSpec(width=8, depth=2), data.input_shape, data.num_classes)
    with pytest.raises(Diverged, match=r"loss became (nan|inf) in epoch \d+ of 5 .*lower the learning rate"):
        train(model, data.train, TrainingSpec(lr=1e12, epochs=5, batch_size=128), device=torch.device("cpu"),
              seed=0)


# -- folders --------------------------------------------------------------------------------------------------


def test_an_out_that_is_a_file_is_one_line(capsys, tmp_path):
    spec = sweep_file(tmp_path, 'name = "x"\nmethods = ["dense"]\n')
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    one_line(capsys, ["run", "--out", afile, *RUN], "is a file, not a folder")
    one_line(capsys, ["sweep", spec, "--out", afile], "is a file, not a folder")
    one_line(capsys, ["report", tmp_path, "--out", afile], "is a file, not a folder")
    assert afile.read_text() == "keep me"


@pytest.fixture
def mounted(tmp_path):
    """A small tmpfs of the test's own (root only), mounted read-only or tiny on request; unmounted after."""
    mounts = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_read_only_out_is_one_line(capsys, tmp_path, mounted):
    read_only = mounted("ro", "ro,size=1m")
    one_line(capsys, ["run", "--out", read_only / "out", *RUN], "cannot write to", "read-only")
    spec = sweep_file(tmp_path, 'name = "x"\nmethods = ["dense"]\n')
    one_line(capsys, ["sweep", spec, "--out", read_only / "out"], "cannot write to")


def test_a_full_disk_is_one_line_and_the_next_run_finishes(capsys, tmp_path, mounted):
    import os

    tiny = mounted("tiny", "size=1m")
    # Almost full: room for the spec and the manifest, not for the results.
    free = os.statvfs(tiny).f_bavail * os.statvfs(tiny).f_frsize
    (tiny / "filler").write_bytes(b"\0" * (free - 12 * 1024))
    out = tiny / "out"
    spec = sweep_file(tmp_path, 'name = "x"\nmethods = ["dense"]\n[base.model]\nwidth = 8\n[base.training]\nepochs = 1\n')
    one_line(capsys, ["sweep", spec, "--out", out, "--device", "cpu"], "No space left on device",
             "nothing was left half-written")
    # Nothing half-written: every file there reads whole, and the sweep finishes once there is room.
    assert not list(out.rglob(".*.tmp-*"))
    (tiny / "filler").unlink()
    assert main(["sweep", str(spec), "--out", str(out), "--device", "cpu"]) == 0


# -- files of a sweep folder ----------------------------------------------------------------------------------


def _finished_sweep(tmp_path) -> tuple[Path, Path]:
    from dpcluster.sweeps.backends import LocalBackend
    from dpcluster.sweeps.coordinator import run_sweep

    spec = tmp_path / "tiny.toml"
    SweepSpec.from_dict(TINY).save(spec)
    out = tmp_path / "out"
    run_sweep(SweepSpec.from_dict(TINY), out, LocalBackend(), "cpu")
    return spec, out


def test_a_corrupt_results_file_is_named_with_what_to_do(capsys, tmp_path):
    spec, out = _finished_sweep(tmp_path)
    (result,) = (out / "results").rglob("*.parquet")
    result.write_bytes(result.read_bytes()[:40])  # cut short
    for argv in (["aggregate", out], ["report", out]):
        one_line(capsys, argv, str(result), "delete it")
    result.unlink()  # as it says: the level runs again
    assert main(["sweep", str(spec), "--out", str(out), "--device", "cpu"]) == 0
    assert main(["aggregate", str(out)]) == 0


@pytest.mark.parametrize("content", [b"", b'{"generation": 3, "jobs": {"a": {"nam', b"[1, 2, 3]",
                                     json.dumps({"x": {"colour": "red"}}).encode()],
                         ids=["empty", "cut short", "a list", "foreign"])
def test_a_corrupt_manifest_is_one_line(capsys, tmp_path, content):
    spec, out = _finished_sweep(tmp_path)
    (out / "manifest.journal").unlink()
    (out / "manifest.json").write_bytes(content)
    for argv in (["sweep", spec, "--out", out, "--device", "cpu"], ["status", out], ["cancel", out]):
        one_line(capsys, argv, "manifest.json", "not a dpcluster manifest")


# -- data and distilled sets -----------------------------------------------------------------------------------


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` pixels (no pixels follow)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_a_png_claiming_a_billion_pixels_is_one_line(capsys, tmp_path):
    from PIL import Image

    sets = tmp_path / "set"
    for label in range(10):
        (sets / str(label)).mkdir(parents=True)
        if label != 3:
            Image.new("L", (8, 8), 128).save(sets / str(label) / "ok.png")
    _png_header(sets / "3" / "huge.png", 30000, 30000)
    one_line(capsys, ["run", "--out", tmp_path / "out", *RUN, "--methods", "distilled", "--distilled", sets,
                      "--distilled-format", "png"], "huge.png", "pixels")


def test_a_distilled_set_whose_extra_is_not_a_table_is_one_line(capsys, tmp_path):
    import torch

    from dpcluster.data import load_data
    from dpcluster.distilled.format import DistilledSet
    from dpcluster.specs import DataSpec

    data = load_data(DataSpec())
    images = torch.zeros(10, *data.input_shape)
    folder = DistilledSet(images=images, labels=torch.arange(10), source_dataset="digits", images_per_class=1,
                          method="dm", mean=data.mean, std=data.std, learned_lr=None,
                          num_classes=10).save(tmp_path / "set")
    sidecar = Path(folder) / "distilled.json"
    meta = json.loads(sidecar.read_text())
    meta["extra"] = "not a table"
    sidecar.write_text(json.dumps(meta))
    one_line(capsys, ["run", "--out", tmp_path / "out", *RUN, "--methods", "distilled", "--distilled", folder],
             "'extra' must be a table")
