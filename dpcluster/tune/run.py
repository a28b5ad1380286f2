"""Running a search: the search spec becomes Ray Tune's param space, scheduler and search algorithm; each trial
runs the project's engine through its objective (inputs loaded once per worker process, distilled sets cached
in the search folder); the trials' reports land as Parquet and the best configuration as spec files.

    OUT/tune/                 Ray Tune's own experiment folder (what ``Tuner.restore`` resumes)
    OUT/trials/search=NAME/<trial id>.parquet   every report of every trial, with its configuration
    OUT/best.toml             the best trial's experiment spec (``dpcluster run --config OUT/best.toml``)
    OUT/best_sweep.toml       the same as a one-experiment sweep (``dpcluster sweep OUT/best_sweep.toml``)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

from dpcluster.errors import UserError
from dpcluster.tune.spec import SearchSpec

TRIAL_KEY_PREFIX = "config/"
# The search spec as the folder's search began, so running it again resumes that search and no other.
SPEC_FILE = "search.toml"


def check_same_search(out: Path, search: SearchSpec) -> None:
    """Refuse a folder that holds a search begun with another spec (one line naming what differs)."""
    spec_file = out / SPEC_FILE
    if not spec_file.exists():
        return
    import tomllib

    began, now = tomllib.loads(spec_file.read_text()), tomllib.loads(search.to_toml())
    if began != now:
        changed = sorted(k for k in set(began) | set(now) if began.get(k) != now.get(k))
        raise UserError(f"{out} holds a search begun with another spec ({', '.join(changed)} differ: see "
                        f"{spec_file}); give another --out, or the spec it began with to resume it")


def keep_search_spec(out: Path, search: SearchSpec) -> None:
    """Make the search folder and keep the spec its search begins with."""
    from dpcluster.atomic import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    if not (out / SPEC_FILE).exists():
        write_atomic(out / SPEC_FILE, lambda handle: handle.write(search.to_toml().encode()))


def param_space(search: SearchSpec) -> dict:
    from ray import tune

    make = {"uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v),
            "randint": lambda v: tune.randint(v[0], v[1] + 1),  # inclusive of high, as written
            "choice": lambda v: tune.choice(list(v)), "grid": lambda v: tune.grid_search(list(v))}
    return {d.key: make[d.distribution](d.values) for d in search.space}


def _search_algorithm(search: SearchSpec):
    if search.algorithm != "optuna":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # Tune's default, random draws with every grid expanded, drawn from the search's seed (the same spec
        # draws the same trials).
        return BasicVariantGenerator(random_state=search.seed)
    try:
        from ray.tune.search.optuna import OptunaSearch

        import optuna  # noqa: F401
    except ImportError:
        raise UserError("algorithm = \"optuna\" needs Optuna: pip install 'dpcluster[optuna]'") from None
    return OptunaSearch(seed=search.seed)


def _scheduler(search: SearchSpec):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from dpcluster.tune.objectives import get_objective

    if search.scheduler == "fifo":
        return FIFOScheduler()
    max_t = get_objective(search.objective).reports(search)
    return ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=max(1, max_t // 4),
                         reduction_factor=2)


def trial(config: dict, search: SearchSpec, out: str, device: str) -> None:
    """One trial in a Ray worker: the experiment with the trial's values, run by the objective."""
    from ray import tune

    from dpcluster.runtime import resolve_device, use_granted_cpus
    from dpcluster.sweeps.context import JobContext
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.methods.reporter import Reporter
    from dpcluster.tracking.reporter import folder_tracking
    from dpcluster.tune.objectives import get_objective

    use_granted_cpus()
    with folder_tracking(Path(out)) as tracking:
        context = JobContext(SweepLayout(Path(out)), resolve_device(device), reporter=tracking or Reporter())
        get_objective(search.objective).run(search.configured(config), search, context, tune.report)


class SearchInterrupted(Exception):
    """The search stopped before every trial ended (Ctrl+C): running it again resumes it."""


def run_search(search: SearchSpec, out: Path, address: str | None = None, device: str = "auto",
               say: Callable[[str], None] = print) -> Path:
    """Run (or resume) the search into ``out``; returns the best configuration's spec file."""
    from ray import tune

    out = Path(out).resolve()  # Tune runs each trial in a folder of its own: every path is absolute
    # Tune's newer console output ignores verbose=0; dpcluster says what happens itself (one line per trial).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("ray.tune").setLevel(logging.WARNING)  # "wrote the experiment state", after every trial
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)  # an infinite time_to_mask is meant
    check_same_search(out, search)
    _connect(address)
    keep_search_spec(out, search)
    trainable = tune.with_resources(tune.with_parameters(trial, search=search, out=str(out), device=device),
                                    {"cpu": search.cpus, "gpu": search.gpus})
    folder = out / "tune" / search.name
    if tune.Tuner.can_restore(str(folder)):
        say(f"resuming the search in {folder}: finished trials are kept")
        tuner = tune.Tuner.restore(str(folder), trainable=trainable, resume_errored=True,
                                   param_space=param_space(search))
    else:
        tuner = tune.Tuner(
            trainable, param_space=param_space(search),
            tune_config=tune.TuneConfig(metric=search.metric, mode=search.mode, num_samples=search.samples,
                                        scheduler=_scheduler(search), search_alg=_search_algorithm(search),
                                        reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(out / "tune"), name=search.name, verbose=0,
                                      callbacks=[_progress(search, say)]))
    results = tuner.fit()
    ended, total = _ended_trials(folder)
    if ended < total:
        raise SearchInterrupted(f"search interrupted with {ended} of {total} trial(s) ended; run the same "
                                f"command again to resume it (finished trials are kept)")
    write_trials(results, search, out)
    if results.num_errors:
        say(f"{results.num_errors} trial(s) failed; their errors are in {folder} (running the search again "
            f"retries them)")
    best = best_config(results, search)
    if best is None:
        from dpcluster.tune.objectives import get_objective

        why = get_objective(search.objective).why_none
        raise UserError(f"no trial ran to its end with a finite {search.metric}{why}; see the trials in "
                        f"{out / 'trials'}")
    return write_best(search, best, out)


def _ended_trials(folder: Path) -> tuple[int, int]:
    """How many of the search's trials ended (finished, stopped early or failed), and how many there are, as the
    saved experiment state has them: after Ctrl+C the trials in memory read as terminated, but the saved state
    keeps the unfinished ones pending, which is what a resumed search runs."""
    from ray.tune import ExperimentAnalysis

    tune_logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = tune_logger.level
    tune_logger.setLevel(logging.ERROR)  # unstarted trials have no results yet: not worth a warning
    try:
        trials = ExperimentAnalysis(str(folder)).trials
    finally:
        tune_logger.setLevel(level)
    return sum(t.status in ("TERMINATED", "ERROR") for t in trials), len(trials)


def _connect(address: str | None) -> None:
    """Ray on an existing cluster at ``address``, or a local one; a wrong address is the user's to fix."""
    import ray

    if ray.is_initialized():
        return
    # No address: the cluster of `ray job submit` (RAY_ADDRESS) or a new local Ray, never another process's
    # cluster that happens to run on this machine (ray.init's own default would join it).
    if address not in (None, "auto", "local"):
        _check_reachable(address)  # what the user typed; RAY_ADDRESS is Ray's own to read
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    from dpcluster.runtime import granted_cpus

    # A local Ray gets the CPUs this process was granted (a Slurm allocation's, not the whole node's).
    local = {"num_cpus": granted_cpus()} if address == "local" else {}
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1"}}, **local)
    except ConnectionError as error:
        raise UserError(f"--address {address}: no Ray cluster there ({str(error).splitlines()[0]})") from None


def _check_reachable(address: str) -> None:
    """Fail in seconds where nothing listens at ``host:port`` (Ray itself keeps retrying for minutes)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected host:port (the head's GCS port, e.g. 10.0.0.1:6379), "
                        f"ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise UserError(f"--address {address}: no Ray cluster answers there ({error.strerror or error})") from None


def best_of(candidates, search: SearchSpec):
    """The best of ``(last report, payload)`` pairs among trials that ran to their end (a trial stopped early was
    scored at an easier point: fewer epochs, a lower sparsity) with a finite metric, as (payload, metric); (None,
    None) when there is none."""
    from dpcluster.tune.objectives import FINAL, better

    best, best_value = None, None
    for metrics, payload in candidates:
        value = (metrics or {}).get(search.metric)
        if (metrics or {}).get(FINAL) and value is not None and math.isfinite(value) \
                and better(value, best_value, search.mode):
            best, best_value = payload, value
    return best, best_value


def best_config(results, search: SearchSpec) -> dict | None:
    """The configuration of the best trial that ran to its end; None when none has a finite metric."""
    return best_of(((r.metrics, r.config) for r in results if r.error is None), search)[0]


def _progress(search: SearchSpec, say: Callable[[str], None]):
    """A Tune callback that says when each trial ends, with the best so far (Tune's own table is turned off)."""
    from ray.tune import Callback

    from dpcluster.tune.objectives import FINAL

    class Progress(Callback):
        # Stateless: counted from the trials each time, so a resumed search goes on counting where it stopped.
        def on_trial_complete(self, iteration, trials, trial, **info):
            ended = 1 + sum(other is not trial and other.status in ("TERMINATED", "ERROR") for other in trials)
            _, best = best_of(((other.last_result, None) for other in trials), search)
            last = trial.last_result or {}
            shown = ", ".join(f"{k}={_number(v)}" for k, v in trial.config.items())
            how = "" if last.get(FINAL) else " (stopped early)"
            say(f"trial {ended}/{search.trials}: {shown}: {search.metric} {_number(last.get(search.metric))} after "
                f"{last.get('training_iteration', 0)} report(s){how}; best so far {_number(best)}")

    return Progress()


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_trials(results, search: SearchSpec, out: Path) -> Path:
    """Every report of every trial as rows (trial id, report number, when, metrics, then the trial's values as
    ``config/<dotted key>`` columns), one file per trial under ``OUT/trials/search=<name>/``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dpcluster.atomic import write_atomic
    from dpcluster.tune.objectives import FINAL, get_objective

    objective = get_objective(search.objective)
    wanted = ("training_iteration", "timestamp", "time_total_s", search.metric, *objective.columns, FINAL)
    folder = out / "trials" / f"search={search.name}"
    folder.mkdir(parents=True, exist_ok=True)
    for result in results:
        frame = result.metrics_dataframe
        if frame is None or frame.empty:
            continue
        trial_id = str(frame["trial_id"].iloc[0])
        keep = [c for c in dict.fromkeys(wanted) if c in frame.columns]
        table = pa.table({"trial_id": [trial_id] * len(frame), **{c: frame[c].tolist() for c in keep},
                          "scored_on": ["validation" if search.validation else "test"] * len(frame),
                          **{TRIAL_KEY_PREFIX + k: [v] * len(frame) for k, v in result.config.items()}})
        write_atomic(folder / f"{trial_id}.parquet", lambda handle: pq.write_table(table, handle))
    return folder


def write_best(search: SearchSpec, config: dict, out: Path) -> Path:
    from dpcluster.sweeps.spec import SweepSpec

    best = search.configured(config)
    best.save(out / "best.toml")
    SweepSpec.from_dict({"name": f"{search.name}-best", "methods": [best.method], "seeds": [best.seed],
                         "datasets": [best.data.name], "models": [best.model.name],
                         "images_per_class": [best.distilled.images_per_class],
                         "base": best.to_dict()}).save(out / "best_sweep.toml")
    return out / "best.toml"
