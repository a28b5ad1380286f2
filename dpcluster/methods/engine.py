"""The round engine shared by every method; what each method does is data in ``dpcluster.methods.registry``.

Round r holds mask m_r (m_0 keeps everything). Each round:

1. the *inner loop* trains the subnetwork m_r to get weights to prune: on real data from the rewind point
   (``imp``, and ``hybrid`` past its switch sparsity), on the distilled set from initialisation
   (``distilled``, and ``hybrid`` before the switch; Algorithm 1 of the papers), or not at all (``random``);
2. pruning gives m_{r+1}: the method's scores (magnitudes of the inner loop's weights, or a random draw that no
   weight influences) keep the highest, across all layers or per layer (``pruning.strategy``);
3. *validation* trains m_{r+1} on real data and tests it: from the rewind point when the method's next inner
   loop is real-data training, else from initialisation. When m_{r+1} will itself be pruned by a real-data
   inner loop, validation is exactly that training (same start, same data order), so it is kept and reused
   rather than run twice, as open_lth does for IMP.

``dense`` trains the unpruned network once. A checkpoint after every round lets a stopped run resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dpcluster.atomic import torch_save_atomic
from dpcluster.data.base import DataBundle, TensorSet
from dpcluster.errors import UserError
from dpcluster.methods.checkpoint import Carry, Checkpoint, State
from dpcluster.methods.registry import Method, get_method
from dpcluster.methods.reporter import Reporter, Training
# The search's files (named in run_files, which loads no torch); mask_path is used by callers of the engine.
from dpcluster.methods.run_files import (  # noqa: F401
    CHECKPOINT_FILE, INIT_FILE, PROGRESS_DIR, RESULTS_FILE, REWIND_FILE, SPEC_FILE, mask_path, trained_path)
from dpcluster.models import build_model
from dpcluster.pruning.masks import (
    Mask,
    count_kept,
    count_total,
    full_mask,
    is_dense,
    layer_counts,
    magnitude_scores,
    mask_hash,
    next_mask,
    pack_mask,
    random_scores,
    sparsity,
    unpack_mask,
)
from dpcluster.pruning.model_masks import capture_state, masked_state, prunable_weights, restore_state
from dpcluster.results.records import LayerCount, RoundRecord, read_records, write_records
from dpcluster.runtime import granted_cpus, progress_seconds
from dpcluster.specs import ExperimentSpec
from dpcluster.training import evaluate, train
from dpcluster.training.batches import steps_per_epoch
from dpcluster.training.distributed import Distributed, world_size_of
from dpcluster.training.loop import Progress


@dataclass
class Inputs:
    """What an experiment trains on, loaded once and shared by the experiments of a run."""

    data: DataBundle
    distilled: TensorSet | None = None
    distilled_lr: float | None = None
    # What distilled_training.augmentation = "auto" means: the augmentation the set was distilled with.
    distilled_augmentation: str = "none"

    @classmethod
    def with_set(cls, data: DataBundle, distilled) -> Inputs:
        """Inputs for a distilled-data method: ``data`` and the DistilledSet ``distilled``."""
        return cls(data, distilled.as_tensor_set(), distilled.learned_lr, distilled.training_augmentation(data))


def inner_data(spec: ExperimentSpec, mask: Mask) -> str:
    """Which data prunes ``mask`` further: "real", "distilled" or "none"."""
    return get_method(spec.method).inner_data(spec, sparsity(mask))


def prune_round(method: Method, spec: ExperimentSpec, weights: dict[str, torch.Tensor], mask: Mask,
                round_index: int) -> Mask:
    """Round ``round_index``'s mask, pruned from ``mask`` by the method's criterion: the magnitudes of
    ``weights`` (the inner loop's result), or a random draw seeded by the experiment's seed and the round alone."""
    if method.criterion == "random":
        generator = torch.Generator().manual_seed(spec.seed * 7919 + round_index)
        scores = random_scores(mask, generator)
    else:
        scores = magnitude_scores(weights)
    return next_mask(scores, mask, spec.pruning.rate, round_index, spec.pruning.strategy)


def rewind_step(spec: ExperimentSpec, train_set: TensorSet | Dataset) -> int:
    """The rewind point in iterations, checked against the length of real-data training."""
    per_epoch = steps_per_epoch(train_set, spec.training.batch_size)
    step = spec.pruning.rewind_point.steps(per_epoch)
    if step >= spec.training.epochs * per_epoch:
        raise UserError(f"pruning.rewind: {spec.pruning.rewind} is not before the end of real-data training "
                        f"({spec.training.epochs} epochs of {per_epoch} iterations)")
    return step


def check_experiment(spec: ExperimentSpec, inputs: Inputs) -> None:
    """Everything about ``spec`` that can only be checked against its data and model; raises UserError."""
    from dpcluster.models import check_model

    model = check_model(spec.model, inputs.data.input_shape, inputs.data.num_classes)
    if not prunable_weights(model, spec.pruning.ignore) and get_method(spec.method).prunes:
        raise UserError(f"model {spec.model.name}: no conv or linear layer to prune"
                        + (" outside pruning.ignore" if spec.pruning.ignore else ""))
    rewind_step(spec, inputs.data.train)


class Experiment:
    """One experiment's run: the model, its initial state, and the trainings the rounds are made of."""

    def __init__(self, spec: ExperimentSpec, inputs: Inputs, device: torch.device, reporter: Reporter,
                 distributed: Distributed | None = None, progress_dir: Path | None = None,
                 init_file: Path | None = None):
        self.spec, self.inputs, self.device, self.reporter = spec, inputs, device, reporter
        # Where each training keeps its per-epoch progress, so an interrupted job resumes mid-training.
        self.progress_dir = progress_dir
        self.method = get_method(spec.method)
        self.distributed = distributed
        torch.manual_seed(spec.seed)
        self.model = build_model(spec.model, inputs.data.input_shape, inputs.data.num_classes)
        self.weights = prunable_weights(self.model, spec.pruning.ignore)
        self.rewind_at = rewind_step(spec, inputs.data.train)
        # Where the search stores the initial weights (None: nowhere); once there, every later use reads them: the
        # same tensors whatever regenerating them would give now.
        self.init_file = None if init_file is None else Path(init_file)
        if self.init_file is not None and self.init_file.exists():
            self.init_state = StoredInit.load(self.init_file).state
            restore_state(self.model, self.init_state)
        else:
            self.init_state = capture_state(self.model)
        # DataLoader workers beyond the CPUs the job was given only contend with training.
        self.workers = min(spec.data.workers, granted_cpus())
        # Every parameter and buffer at the rewind point, once a real-data training from initialisation passed it
        # (or as a search left it: its checkpoint's, its rewind.pt).
        self.rewind_state: State | None = None

    def store_init(self) -> None:
        """Keep the initial weights in the init file, once (a resumed search finds them there)."""
        if self.init_file is not None and not self.init_file.exists():
            per_epoch = steps_per_epoch(self.inputs.data.train, self.spec.training.batch_size)
            StoredInit(self.init_state, self.rewind_at, per_epoch).save(self.init_file)

    # --- trainings ------------------------------------------------------------------------------
    def _progress(self, label: str, *identity) -> Progress | None:
        """The progress file of the training ``label`` (distinct within an experiment), keyed by what makes it
        that training."""
        if self.progress_dir is None:
            return None
        name = "".join(c if c.isalnum() else "-" for c in label).strip("-")
        key = ":".join(map(str, (self.spec.experiment_id, label, *identity)))
        return Progress(self.progress_dir / f"{name}.pt", key, progress_seconds())

    def _start(self, state: State, mask: Mask) -> None:
        restore_state(self.model, masked_state(state, mask))

    def train_real(self, mask: Mask, from_rewind: bool, label: str, data_seed: int | None = None,
                   round_index: int = 0) -> Carry:
        """Train ``mask`` on real data, from the rewind point or from initialisation; ``data_seed`` (default: the
        experiment's seed) draws the data order and augmentation. The first training from the rewind point to
        pass it keeps the state there in ``self.rewind_state``."""
        spec = self.spec
        start_step, snapshot_step = 0, None
        extra = None
        if from_rewind and self.rewind_state is None and self.rewind_at > 0 and not is_dense(mask):
            # The first real-data training is of a sparse subnetwork (the hybrid's first IMP round): the rewind
            # point is still the dense network's, as IMP's is, trained here up to it.
            extra = self._dense_rewind_point()
        if from_rewind and self.rewind_state is not None:
            self._start(self.rewind_state, mask)
            start_step = self.rewind_at
        else:
            self._start(self.init_state, mask)
            if from_rewind:
                # The first real-data training of the run sets the rewind point as it passes it.
                snapshot_step = self.rewind_at
        seed = spec.seed if data_seed is None else data_seed
        result = train(self.model, self.inputs.data.train, spec.training, device=self.device, seed=seed, mask=mask,
                       start_step=start_step, snapshot_step=snapshot_step, workers=self.workers,
                       on_epoch=self.reporter.start_training(Training(spec, round_index, label, spec.training.epochs)),
                       distributed=self.distributed,
                       progress=self._progress(label, mask_hash(mask), start_step, seed))
        if snapshot_step is not None:
            self.rewind_state = result.snapshot
        self._say_resumed(label, result)
        seconds, examples = result.seconds, result.examples_seen
        if extra is not None:  # what reaching the rewind point cost is this training's
            seconds, examples = seconds + extra.seconds, examples + extra.examples_seen
        return Carry(capture_state(self.model), seconds, examples)

    def _dense_rewind_point(self):
        """The dense network trained on real data from initialisation up to the rewind point, exactly as IMP's
        first inner loop passes it (the same seed, data order and schedule), its state kept as the rewind point."""
        spec = self.spec
        self._start(self.init_state, full_mask(self.weights))
        result = train(self.model, self.inputs.data.train, spec.training, device=self.device, seed=spec.seed,
                       snapshot_step=self.rewind_at, stop_step=self.rewind_at, workers=self.workers,
                       distributed=self.distributed)
        self.rewind_state = result.snapshot
        return result

    def train_distilled(self, mask: Mask, label: str, round_index: int = 0) -> Carry:
        spec = self.spec
        self._start(self.init_state, mask)
        lr = self.inputs.distilled_lr if spec.distilled.use_learned_lr else None
        training = spec.distilled_training.with_auto_augmentation(self.inputs.distilled_augmentation)
        result = train(self.model, self.inputs.distilled, training, device=self.device,
                       seed=spec.seed, mask=mask, lr=lr,
                       on_epoch=self.reporter.start_training(
                           Training(spec, round_index, label, spec.distilled_training.epochs)),
                       progress=self._progress(label, mask_hash(mask)))
        self._say_resumed(label, result)
        return Carry(capture_state(self.model), result.seconds, result.examples_seen)

    def _say_resumed(self, label: str, result) -> None:
        if result.resumed_from is not None:
            self.reporter.message(f"{label}: resumed from its progress at step {result.resumed_from}")

    def test(self, state: State) -> tuple[float, float]:
        restore_state(self.model, state)
        return evaluate(self.model, self.inputs.data.test, device=self.device, workers=self.workers)

    # --- rounds ---------------------------------------------------------------------------------
    def record(self, round_index: int, mask: Mask, inner: str, inner_run: Carry | None,
               validation: Carry | None, earlier: list[RoundRecord]) -> RoundRecord:
        """Round ``round_index``'s record; ``earlier`` are the rounds before it (their inner loops count towards
        the cost of finding this mask)."""
        spec = self.spec
        inner_seconds = inner_run.seconds if inner_run else 0.0
        inner_examples = inner_run.examples if inner_run else 0
        record = RoundRecord(
            experiment_id=spec.experiment_id, method=spec.method, seed=spec.seed, dataset=spec.data.partition_name,
            model=spec.model.name, round=round_index, sparsity=sparsity(mask), weights_kept=count_kept(mask),
            weights_total=count_total(mask), test_accuracy=None, test_loss=None, inner_data=inner,
            inner_seconds=inner_seconds, inner_examples=inner_examples, validation_seconds=0.0,
            validation_examples=0,
            mask_search_seconds=sum(r.inner_seconds for r in earlier) + inner_seconds,
            mask_search_examples=sum(r.inner_examples for r in earlier) + inner_examples,
            time_to_mask_seconds=None, time_to_mask_examples=None, mask_hash=mask_hash(mask),
            layers=tuple(LayerCount(*layer) for layer in layer_counts(mask)),
            rewind=spec.rewind_point_used,
        )
        if validation is None:
            return record
        accuracy, loss = self.test(validation.state)
        return record.with_validation(accuracy, loss, validation.seconds, validation.examples, self.world_size)

    @property
    def world_size(self) -> int:
        """How many processes this experiment's real-data trainings run on."""
        return world_size_of(self.distributed)

    def run_dense(self, checkpoint: Checkpoint) -> None:
        validation = self.train_real(checkpoint.mask, from_rewind=False, label="dense")
        checkpoint.records.append(self.record(0, checkpoint.mask, "none", None, validation, []))

    def run_round(self, checkpoint: Checkpoint, validate: bool) -> None:
        """One round; with ``validate``, the new subnetwork is trained and tested even where no later round needs
        that training."""
        spec, mask, r = self.spec, checkpoint.mask, checkpoint.round
        inner = inner_data(spec, mask)
        label = f"round {r + 1}"
        if inner == "real":
            inner_run = checkpoint.carry or self.train_real(mask, True, f"{label}: real inner loop",
                                                            round_index=r + 1)
        elif inner == "distilled":
            inner_run = self.train_distilled(mask, f"{label}: distilled inner loop", round_index=r + 1)
        else:
            inner_run = None
        weights = None
        if inner_run is not None:
            restore_state(self.model, inner_run.state)
            weights = self.weights
        new_mask = prune_round(self.method, spec, weights, mask, r + 1)

        validation = carry = None
        next_inner = inner_data(spec, new_mask)
        if validate or (next_inner == "real" and r + 1 < spec.pruning.num_rounds):
            from_rewind = self.method.validates_from_rewind(spec, sparsity(new_mask))
            validation = self.train_real(new_mask, from_rewind=from_rewind, label=f"{label}: validation",
                                         round_index=r + 1)
            carry = validation if next_inner == "real" else None
        # A validation trained anyway (as the next inner loop) is recorded: testing it costs one evaluation.
        record = self.record(r + 1, new_mask, inner, inner_run, validation, checkpoint.records)
        checkpoint.records.append(record)
        checkpoint.round, checkpoint.mask, checkpoint.carry = r + 1, new_mask, carry
        checkpoint.rewind_state = self.rewind_state  # kept with the round, for a run that resumes after it
        self.reporter.end_round(record)


def run_experiment(spec: ExperimentSpec, inputs: Inputs, run_dir: Path, device: torch.device,
                   reporter: Reporter | None = None, keep_masks: bool = False,
                   validate: bool | None = None, keep_trained: tuple[int, ...] = ()) -> list[RoundRecord]:
    """Run (or resume, or skip if finished) one experiment; its results land in ``run_dir``.

    ``validate`` (default ``spec.pruning.validate``): train and test every round's subnetwork. Without it, a round
    is validated only where that training is the next round's inner loop anyway (IMP), so the search costs
    nothing extra. With ``keep_masks``, every round's mask is kept in ``run_dir/masks/`` and the rewind point's
    state in ``run_dir/rewind.pt``, so each level can be validated later on its own (:func:`validate_round`).
    The initial weights are stored in ``run_dir/init.pt`` as the search starts. The rounds in ``keep_trained``
    whose validation the search trains (as IMP's next inner loop) keep that trained network in
    ``run_dir/trained/``, as a level's own validation does."""
    reporter = reporter or Reporter()
    validate = spec.pruning.validate if validate is None else validate
    results = run_dir / RESULTS_FILE
    if results.exists():
        return read_records(results)
    check_experiment(spec, inputs)
    if spec.uses_distilled_set and inputs.distilled is None:
        raise ValueError(f"method {spec.method} needs a distilled set in its inputs")
    run_dir.mkdir(parents=True, exist_ok=True)
    spec.save(run_dir / SPEC_FILE)

    experiment = Experiment(spec, inputs, device, reporter, progress_dir=run_dir / PROGRESS_DIR,
                            init_file=run_dir / INIT_FILE)
    experiment.store_init()
    checkpoint_path = run_dir / CHECKPOINT_FILE
    if checkpoint_path.exists():
        checkpoint = Checkpoint.load(checkpoint_path)
        if checkpoint.experiment_id != spec.experiment_id:
            raise UserError(f"{checkpoint_path} belongs to experiment {checkpoint.experiment_id}, "
                            f"not {spec.experiment_id}")
    else:
        checkpoint = Checkpoint(spec.experiment_id, 0, full_mask(experiment.weights))
    experiment.rewind_state = checkpoint.rewind_state

    rounds = spec.pruning.num_rounds if experiment.method.prunes else 0
    reporter.start_experiment(spec.name, max(rounds, 1), len(checkpoint.records))
    if not experiment.method.prunes:
        if not checkpoint.records:
            experiment.run_dense(checkpoint)
            reporter.end_round(checkpoint.records[-1])
    while checkpoint.round < rounds:
        experiment.run_round(checkpoint, validate)
        if checkpoint.round in keep_trained and checkpoint.carry is not None:
            KeptTraining(checkpoint.carry.state, experiment.world_size).save(trained_path(run_dir, checkpoint.round))
        if keep_masks:
            torch_save_atomic(pack_mask(checkpoint.mask), mask_path(run_dir, checkpoint.round))
        checkpoint.save(checkpoint_path)
    if keep_masks and checkpoint.rewind_state is not None:
        torch_save_atomic(checkpoint.rewind_state, run_dir / REWIND_FILE)
    write_records(checkpoint.records, results)
    checkpoint_path.unlink(missing_ok=True)
    reporter.end_experiment(spec.name)
    return checkpoint.records


def searched_validation(mask_run_dir: Path, round_index: int) -> RoundRecord | None:
    """Round ``round_index``'s record from a finished mask search, when the search validated it (its validation
    was the next round's inner loop); None when it did not, or the search is not finished."""
    results = mask_run_dir / RESULTS_FILE
    if not results.exists():
        return None
    record = {r.round: r for r in read_records(results)}.get(round_index)
    return record if record is not None and record.test_accuracy is not None else None


def validate_round(spec: ExperimentSpec, inputs: Inputs, mask_run_dir: Path | None, round_index: int,
                   device: torch.device, reporter: Reporter | None = None,
                   distributed: Distributed | None = None, progress_dir: Path | None = None,
                   keep_trained: Path | None = None) -> RoundRecord:
    """Train round ``round_index``'s subnetwork (kept by a ``keep_masks`` run in ``mask_run_dir``) on real data
    and test it, exactly as the round engine validates it; round 0 of ``dense`` needs no mask run. A round the
    search already validated (its validation was the next inner loop) is that record, not trained again. With
    ``distributed``, the training is data-parallel across the processes of the group. With ``keep_trained``,
    the trained network is saved there (for the level's analyses, which start from it)."""
    if round_index and (searched := searched_validation(mask_run_dir, round_index)) is not None:
        return searched
    experiment, mask, from_rewind = _level(spec, inputs, mask_run_dir, round_index, device, reporter, distributed,
                                           progress_dir)
    if round_index == 0 and (distributed is None or distributed.is_main):
        experiment.store_init()  # the dense network has no search to store them: its validation does
    validation = experiment.train_real(mask, from_rewind=from_rewind, label=f"round {round_index}: validation",
                                       round_index=round_index)
    if keep_trained is not None and (distributed is None or distributed.is_main):
        KeptTraining(validation.state, experiment.world_size).save(keep_trained)
    if round_index == 0:
        return experiment.record(0, mask, "none", None, validation, [])
    searched = {r.round: r for r in read_records(mask_run_dir / RESULTS_FILE)}[round_index]
    accuracy, loss = experiment.test(validation.state)
    return searched.with_validation(accuracy, loss, validation.seconds, validation.examples, experiment.world_size)


def _level(spec: ExperimentSpec, inputs: Inputs, mask_run_dir: Path | None, round_index: int, device: torch.device,
           reporter: Reporter | None, distributed: Distributed | None = None, progress_dir: Path | None = None):
    """Round ``round_index``'s subnetwork as its validation starts it: the experiment (holding the search's
    rewind state), the mask, and whether training starts from the rewind point (else initialisation)."""
    check_experiment(spec, inputs)
    init_file = mask_run_dir / INIT_FILE if mask_run_dir is not None else None
    experiment = Experiment(spec, inputs, device, reporter or Reporter(), distributed, progress_dir, init_file)
    if round_index == 0:
        return experiment, full_mask(experiment.weights), False
    mask = unpack_mask(torch.load(mask_path(mask_run_dir, round_index), weights_only=True))
    rewind = mask_run_dir / REWIND_FILE
    experiment.rewind_state = torch.load(rewind, weights_only=True) if rewind.exists() else None
    from_rewind = (experiment.method.validates_from_rewind(spec, sparsity(mask))
                   and experiment.rewind_state is not None)
    return experiment, mask, from_rewind


@dataclass
class TrainedPair:
    """Two copies of one level's subnetwork trained on real data from the same start (its validation's) with
    different data orders and augmentation draws, both on ``world_size`` processes: the raw material of
    stability, landscape and sharpness."""

    mask: Mask
    a: State
    b: State
    # None for a pair kept before it was recorded.
    world_size: int | None = 1


@dataclass(frozen=True)
class StoredInit:
    """An experiment's initial state as its search stored it, with its rewind point in iterations of the real
    training set (``steps_per_epoch`` of them an epoch)."""

    state: State
    rewind_step: int
    steps_per_epoch: int

    def save(self, path: Path) -> None:
        torch_save_atomic({"state": self.state, "rewind_step": self.rewind_step,
                           "steps_per_epoch": self.steps_per_epoch}, path)

    @classmethod
    def load(cls, path: Path) -> StoredInit:
        saved = torch.load(path, weights_only=True)
        return cls(saved["state"], int(saved["rewind_step"]), int(saved["steps_per_epoch"]))


@dataclass(frozen=True)
class KeptTraining:
    """A validation's trained network, kept for its level's pair, with the number of processes that trained it."""

    state: State
    world_size: int | None

    def save(self, path: Path) -> None:
        torch_save_atomic({"state": self.state, "world_size": self.world_size}, path)

    @classmethod
    def load(cls, path: Path) -> KeptTraining:
        saved = torch.load(path, weights_only=True)
        if "state" not in saved:  # kept before the world size was: a bare state, of an unknown procedure
            return cls(saved, None)
        return cls(saved["state"], saved["world_size"])


def train_pair(spec: ExperimentSpec, inputs: Inputs, mask_run_dir: Path | None, round_index: int,
               device: torch.device, reporter: Reporter | None = None, progress_dir: Path | None = None,
               validated: KeptTraining | None = None, distributed: Distributed | None = None) -> TrainedPair:
    """Copy ``a`` trains with the experiment's own data order, so it is the validated network: ``validated``
    when the validation kept it, else trained here. Copy ``b`` trains with another data order, drawn from a seed
    no experiment of a sweep uses for its data. Both copies are one procedure: with ``distributed`` both train
    data-parallel across its processes, and a validation trained on another number of processes is not reused
    as copy a (on the CPU, BatchNorm's statistics depend on it)."""
    experiment, mask, from_rewind = _level(spec, inputs, mask_run_dir, round_index, device, reporter, distributed,
                                           progress_dir)
    world_size = experiment.world_size

    def copy(name: str, data_seed: int) -> State:
        return experiment.train_real(mask, from_rewind, f"round {round_index}: copy {name}", data_seed=data_seed,
                                     round_index=round_index).state

    if validated is not None and validated.world_size != world_size:
        trained_on = "an unrecorded number of" if validated.world_size is None else validated.world_size
        experiment.reporter.message(f"round {round_index}: copy a is trained again: the validation ran on "
                                    f"{trained_on} process(es), this pair on {world_size}")
        validated = None
    if validated is not None:
        experiment.reporter.message(f"round {round_index}: copy a is the validation's trained network")
    a = validated.state if validated is not None else copy("a", spec.seed)
    return TrainedPair(mask, a, copy("b", PAIR_SEED_OFFSET + spec.seed), world_size)


# Copy b's data seed: the experiment's seed shifted past any seed a sweep would list.
PAIR_SEED_OFFSET = 1_000_003


def level_mask(spec: ExperimentSpec, inputs: Inputs, mask_run_dir: Path | None,
               round_index: int) -> tuple[Mask, State]:
    """Round ``round_index``'s mask (everything kept at round 0) and the experiment's initial weights."""
    experiment, mask, _ = _level(spec, inputs, mask_run_dir, round_index, torch.device("cpu"), None)
    return mask, experiment.init_state
