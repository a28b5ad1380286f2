"""What dpcluster's bookkeeping costs at the papers' size and beyond: sweeps of 41, 4,556 and 45,551 jobs.

The sweeps: ``jobs/digits_small.toml`` (41 jobs); the papers' AlexNet / CIFAR-10 sweep with the second paper's
analyses and both rewind points (4,556 jobs); the same with 50 seeds (45,551 jobs). Measured, each as the command
a user runs, in a process of its own (wall time and peak memory from ``wait4``):

- planning: ``dpcluster sweep SPEC --dry-run`` (expansion, the manifest, the job listing);
- bookkeeping: the coordinator over the whole sweep with a backend whose jobs end at once (nothing runs), so what
  is left is the coordinator's own work — its time, and the bytes it writes per job (``/proc/self/io``);
- Slurm (``--slurm``; needs root and ``slurm/cluster.sh``): for the 4,556-job sweep, on the local cluster
  restarted with site limits (MaxArraySize 16, root's MaxSubmitJobs 20; then Slurm's defaults), the dry run's
  split, the time the submitting command takes to return (jobs submitted on hold, so nothing runs),
  ``dpcluster status`` and ``dpcluster cancel``; the cluster is put back to its defaults after;
- the report (``--report``): ``dpcluster report`` on synthetic data of the 4,556-job sweep, in the real schemas;
- results (``--results``, ``bench/scale_results.py``; this checkout only): reading and aggregating 10k / 100k / 1M
  result rows, and the report's parts.

``--tree DIR`` measures another checkout of dpcluster (the commands import dpcluster from it), so one
script gives the figures before and after a change; ``--label`` names them in the JSON (default
bench/results/scale.json, which keeps the other labels' figures)::

    python bench/scale.py --slurm                                   # this checkout, label "after"
    python bench/scale.py --tree /tmp/before --label before --sizes 41,4556 --slurm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import tomli_w

REPO = Path(__file__).resolve().parents[1]
SIZES = (41, 4556, 45551)


# Runs ``-m MODULE ARGS`` or ``-c CODE ARGS`` with dpcluster imported from the tree given first: the editable
# install's import hook (which would find this checkout whatever PYTHONPATH says) is taken out first.
LAUNCH = r"""
import runpy, sys
tree, how, what = sys.argv[1:4]
sys.argv = [what, *sys.argv[4:]]
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path.insert(0, tree)
if how == "-m":
    runpy.run_module(what, run_name="__main__", alter_sys=True)
else:
    sys.argv[0] = "-c"
    exec(compile(what, "<bench>", "exec"), {"__name__": "__main__"})
"""


def sweep_specs(folder: Path) -> dict[int, Path]:
    """The three sweeps, by their number of jobs."""
    paper = tomllib.loads((REPO / "jobs" / "alexnet_cifar10.toml").read_text())
    # Every analysis at every level (the shipped spec measures stability at five).
    paper.update(analyses=["stability", "landscape", "sharpness", "kept_weights"], rewinds=["0ep", "1ep"])
    paper.pop("analysis", None)
    specs = {41: REPO / "jobs" / "digits_small.toml"}
    for jobs, seeds in ((4556, 5), (45551, 50)):
        path = folder / f"papers-{jobs}.toml"
        path.write_text(tomli_w.dumps({**paper, "seeds": list(range(seeds))}))
        specs[jobs] = path
    return specs


def measured(command: list[str], env: dict) -> dict:
    """Run ``command``; its wall time, peak memory and output."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{output[-3000:]}")
    return {"seconds": round(seconds, 2), "peak_mb": round(usage.ru_maxrss / 1024), "output": output}


# The coordinator over a whole sweep with jobs that end at once: settling is switched off (it reads files no job
# wrote here) and every job is reported done as soon as the coordinator waits for one. Written against what both
# the old and the new coordinator have (run_sweep, the module's get_kind, the Backend protocol).
SIMULATION = r"""
import dataclasses, json, sys, time
from pathlib import Path
from dpcluster.sweeps import coordinator
from dpcluster.sweeps.backends import Outcome
from dpcluster.sweeps.jobs import get_kind
from dpcluster.sweeps.spec import SweepSpec

coordinator.get_kind = lambda kind: dataclasses.replace(get_kind(kind), settle=lambda job, layout: False)

class Instant:
    name, resolves_dependencies = "instant", False
    def __init__(self):
        self.queue = []
    def submit(self, call, after=()):
        self.queue.append(call)
    def outstanding(self):
        return len(self.queue)
    def wait(self):
        return [Outcome(self.queue.pop(0).job.id, True)]

def written():
    return int(dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())["wchar"])

sweep = SweepSpec.load(sys.argv[1])
before, started = written(), time.perf_counter()
manifest = coordinator.run_sweep(sweep, Path(sys.argv[2]), Instant(), "cpu")
seconds, total = time.perf_counter() - started, written() - before
jobs = len(manifest.jobs)
assert all(state.state == "done" for state in manifest.jobs.values())
print(json.dumps({"jobs": jobs, "seconds": round(seconds, 2), "bytes_per_job": round(total / jobs)}))
"""


# One state change on a manifest of n jobs: what it costs in time and bytes written (the old manifest rewrote its
# whole file for each). Written against what both manifests have (open, add, save, set).
CHANGE = r"""
import json, sys, time
from pathlib import Path
from dpcluster.sweeps.manifest import Manifest

def written():
    return int(dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())["wchar"])

jobs = int(sys.argv[1])
manifest = Manifest.open(Path(sys.argv[2]) / "manifest.json")
for i in range(jobs):
    manifest.add(f"validate-{i:012d}", f"validate-imp-0ep-s{i % 5}-cifar10-alexnet-r{i % 30}", "validate")
manifest.save()
changes = 20
before, started = written(), time.perf_counter()
for i in range(changes):
    manifest.set(f"validate-{i:012d}", "running")
seconds, total = (time.perf_counter() - started) / changes, (written() - before) / changes
print(json.dumps({"jobs": jobs, "seconds_per_change": round(seconds, 6), "bytes_per_change": round(total)}))
"""


def change(python: list[str], jobs: int, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        run = measured([*python, "-c", CHANGE, str(jobs), folder], env)
    return json.loads(run["output"].strip().splitlines()[-1])


def bookkeeping(python: list[str], spec: Path, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        run = measured([*python, "-c", SIMULATION, str(spec), folder], env)
    figures = json.loads(run["output"].strip().splitlines()[-1])
    return {**figures, "peak_mb": run["peak_mb"]}


def planning(dpcluster: list[str], spec: Path, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        run = measured([*dpcluster, "sweep", str(spec), "--dry-run", "--out", f"{folder}/out"], env)
    jobs = sum(1 for line in run["output"].splitlines() if line.startswith("would run "))
    return {"jobs": jobs, "seconds": run["seconds"], "peak_mb": run["peak_mb"]}


def report_figures(dpcluster: list[str], env: dict) -> dict:
    """``dpcluster report`` on the synthetic data of the 4,556-job sweep (``scale_results.write_report_sweep``:
    one small file per validation and analysis job, as the jobs write them), run twice: the first run finds the
    small files (and, from now on, compacts them), the second what the first left."""
    sys.path.insert(0, str(REPO / "bench"))
    from scale_results import write_report_sweep

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "sweep"
        data.mkdir()
        files = write_report_sweep(data)
        runs = [measured([*dpcluster, "report", str(data)], env) for _ in range(2)]
    return {"files": sum(files.values()), "first": {key: runs[0][key] for key in ("seconds", "peak_mb")},
            "second": {key: runs[1][key] for key in ("seconds", "peak_mb")}}


def cluster(limits: dict[str, str]) -> None:
    """The local Slurm (re)started with ``limits`` (cluster.sh's environment variables)."""
    done = subprocess.run(["bash", str(REPO / "slurm" / "cluster.sh"), "start"], env={**os.environ, **limits},
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"slurm/cluster.sh start failed:\n{done.stderr[-2000:]}")


# (name, cluster.sh's limits, dpcluster's options): the site limits of the test with this 2-CPU node's
# packing, the same with a task per job (as on a large partition), and Slurm's default limits with a task per job.
SLURM_SCENARIOS = (
    ("limits 16/20, packed", {"DPCLUSTER_SLURM_MAX_ARRAY_SIZE": "16", "DPCLUSTER_SLURM_MAX_SUBMIT_JOBS": "20"}, []),
    ("limits 16/20, a task per job", {"DPCLUSTER_SLURM_MAX_ARRAY_SIZE": "16", "DPCLUSTER_SLURM_MAX_SUBMIT_JOBS": "20"},
     ["--pack", "never"]),
    ("Slurm's defaults, a task per job", {}, ["--pack", "never"]),
)


def slurm(dpcluster: list[str], spec: Path, env: dict, limits: dict[str, str], options: list[str]) -> dict:
    """Dry run, submit (held), status and cancel of one sweep on the local Slurm under ``limits``."""
    cluster(limits)
    out = Path(tempfile.mkdtemp(prefix="scale-slurm-"))
    site = [*dpcluster, "sweep", str(spec), "--backend", "slurm", "--partition", "debug", "--out", str(out / "s"),
            "--sbatch", "hold", *options]
    figures = {"limits": limits, "options": options}
    try:
        dry = measured(site + ["--dry-run"], env)
        figures["dry_run"] = {"seconds": dry["seconds"], "peak_mb": dry["peak_mb"],
                              "limits_read": [line for line in dry["output"].splitlines()
                                              if line.startswith("# Slurm limits read")],
                              "split": [line for line in dry["output"].splitlines()
                                        if line.startswith("# ") and line[2:3].isdigit()]}
        submitted = measured(site, env)
        figures["submit"] = {"seconds": submitted["seconds"], "peak_mb": submitted["peak_mb"],
                             "said": [line for line in submitted["output"].splitlines()
                                      if "job(s)" in line and not line.startswith(("┃", "│"))]}
        queued = subprocess.run(["squeue", "--noheader", "--array", "--user", "root"], capture_output=True,
                                text=True).stdout.count("\n")
        figures["queued_after_submit"] = queued
        for command in ("status", "cancel"):
            run = measured([*dpcluster, command, str(out / "s")], env)
            figures[command] = {"seconds": run["seconds"], "peak_mb": run["peak_mb"]}
    finally:
        subprocess.run(["scancel", "--user", "root"], capture_output=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=REPO, help="the dpcluster checkout to measure")
    parser.add_argument("--label", default="after")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--bookkeeping-sizes", help="sizes to simulate the coordinator on (default: --sizes)")
    parser.add_argument("--slurm", action="store_true", help="also the Slurm figures (root, slurm/cluster.sh)")
    parser.add_argument("--results", action="store_true", help="also the results figures (bench/scale_results.py)")
    parser.add_argument("--report", action="store_true", help="also dpcluster report on the 4,556-job sweep's data")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale.json")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    simulated = [int(size) for size in (args.bookkeeping_sizes or args.sizes).split(",")]
    tree = args.tree.resolve()
    env = dict(os.environ)
    python = [sys.executable, "-c", LAUNCH, str(tree)]
    dpcluster = [*python, "-m", "dpcluster"]
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    figures: dict = {"tree": str(tree), "commit": commit, "planning": {}, "change": {}, "bookkeeping": {}}
    with tempfile.TemporaryDirectory() as folder:
        specs = sweep_specs(Path(folder))
        for size in sizes:
            figures["planning"][size] = planning(dpcluster, specs[size], env)
            print(f"planning {size}: {figures['planning'][size]}", flush=True)
        for size in sizes:
            figures["change"][size] = change(python, size, env)
            print(f"one state change, {size} jobs: {figures['change'][size]}", flush=True)
        for size in simulated:
            figures["bookkeeping"][size] = bookkeeping(python, specs[size], env)
            print(f"bookkeeping {size}: {figures['bookkeeping'][size]}", flush=True)
        if args.slurm:
            figures["slurm_4556"] = {}
            try:
                for name, limits, options in SLURM_SCENARIOS:
                    figures["slurm_4556"][name] = slurm(dpcluster, specs[4556], env, limits, options)
                    print(f"slurm, {name}: {figures['slurm_4556'][name]}", flush=True)
            finally:
                cluster({})
    if args.report:
        figures["report_4556"] = report_figures(dpcluster, env)
        print(f"report: {figures['report_4556']}", flush=True)
    if args.results:
        sys.path.insert(0, str(REPO / "bench"))
        from scale_results import measure_results

        figures["results"] = measure_results()
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.update(machine=platform.machine(), cpus=os.cpu_count(), python=platform.python_version())
    report.setdefault("labels", {})[args.label] = figures
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
