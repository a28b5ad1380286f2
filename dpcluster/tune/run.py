"""Running a search: the search spec becomes Ray Tune's param space, scheduler and search algorithm; each trial
runs the project's engine through its objective (inputs loaded once per worker process, distilled sets cached
in the search folder); the trials' reports land as Parquet and the best configuration as spec files.

    OUT/tune/                 Ray Tune's own experiment folder (what ``Tuner.restore`` resumes)
    OUT/trials/search=NAME/<trial id>.parquet   every report of every trial, with its configuration
    OUT/best.toml             the best trial's experiment spec (``dpcluster run --config OUT/best.toml``)
    OUT/best_sweep.toml       the same as a one-experiment sweep (``dpcluster sweep OUT/best_sweep.toml``)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dpcluster.errors import UserError
from dpcluster.tune.spec import SearchSpec

TRIAL_KEY_PREFIX = "config/"


def param_space(search: SearchSpec) -> dict:
    from ray import tune

    make = {"uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v),
            "randint": lambda v: tune.randint(v[0], v[1] + 1),  # inclusive of high, as written
            "choice": lambda v: tune.choice(list(v)), "grid": lambda v: tune.grid_search(list(v))}
    return {d.key: make[d.distribution](d.values) for d in search.space}


def _search_algorithm(search: SearchSpec):
    if search.algorithm != "optuna":
        return None  # Tune's default: random draws, with every grid expanded
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
    from dpcluster.tune.objectives import get_objective

    use_granted_cpus()
    context = JobContext(SweepLayout(Path(out)), resolve_device(device))
    spec = search.configured(config)
    get_objective(search.objective).run(spec, search, context, tune.report)


def run_search(search: SearchSpec, out: Path, address: str | None = None, device: str = "auto",
               say: Callable[[str], None] = print) -> Path:
    """Run (or resume) the search into ``out``; returns the best configuration's spec file."""
    import ray
    from ray import tune

    out = Path(out).resolve()  # Tune runs each trial in a folder of its own: every path is absolute
    out.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1"}})
    trainable = tune.with_resources(tune.with_parameters(trial, search=search, out=str(out), device=device),
                                    {"cpu": search.cpus, "gpu": search.gpus})
    folder = out / "tune" / search.name
    callbacks = [_progress(search, say)]
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
                                      callbacks=callbacks))
    results = tuner.fit()
    write_trials(results, search, out)
    best = results.get_best_result(metric=search.metric, mode=search.mode, scope="last")
    if best is None or best.config is None:
        raise UserError("no trial reported a result; see the trials' errors in " + str(folder))
    return write_best(search, best.config, out)


def _progress(search: SearchSpec, say: Callable[[str], None]):
    """A Tune callback that says when each trial ends, with the best so far (Tune's own table is turned off)."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self):
            self.best, self.ended = None, 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.ended += 1
            last = trial.last_result or {}
            value = last.get(search.metric)
            if value is not None and (self.best is None or (value > self.best if search.mode == "max"
                                                            else value < self.best)):
                self.best = value
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.config.items())
            say(f"trial {self.ended}/{search.trials}: {shown}: {search.metric} {value} after "
                f"{last.get('training_iteration', 0)} report(s); best so far {self.best}")

    return Progress()


def write_trials(results, search: SearchSpec, out: Path) -> Path:
    """Every report of every trial as rows (trial id, report number, metrics, then the trial's values as
    ``config/<dotted key>`` columns), one file per trial under ``OUT/trials/search=<name>/``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dpcluster.atomic import write_atomic

    folder = out / "trials" / f"search={search.name}"
    folder.mkdir(parents=True, exist_ok=True)
    for result in results:
        frame = result.metrics_dataframe
        if frame is None or frame.empty:
            continue
        trial_id = str(frame["trial_id"].iloc[0])
        keep = [c for c in ("training_iteration", "test_accuracy", "test_loss", "epoch", "time_total_s")
                if c in frame.columns]
        table = pa.table({"trial_id": [trial_id] * len(frame), **{c: frame[c].tolist() for c in keep},
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
