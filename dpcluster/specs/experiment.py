"""The specs of one experiment: data, model, training, pruning, distilled set, and the experiment itself."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

from dpcluster.distilled.normalization import UPSTREAM
from dpcluster.distilled.registry import AUTO
from dpcluster.errors import SpecError
from dpcluster.methods.registry import get_method, method_names
from dpcluster.specs.base import NOT_IDENTITY, Spec, Table, check, check_choice

OPTIMIZERS = ("sgd", "adam", "adamw")
# "dsa": differentiable siamese augmentation (colour, crop, cutout, flip, scale, rotate); "dsa_noflip" leaves
# out the flip (digits). "auto", for training on a distilled set, is the augmentation the set was made with.
AUGMENTATIONS = ("none", "flip", "crop", "crop_flip", "dsa", "dsa_noflip")
DISTILL_AUGMENTATIONS = ("auto", "none", "dsa", "dsa_noflip")
# Where pruning compares weights: across all layers, or within each layer (every layer kept at the same density).
STRATEGIES = ("global", "layerwise")
# How the learning rate falls: by gamma at each of `milestones`, or once at half the epochs (MTT's evaluation).
SCHEDULES = ("milestones", "half")


@dataclass(frozen=True)
class DataSpec(Spec):
    name: str = "digits"
    # Folder holding the data set in torchvision's on-disk format (not used by digits). Not part of the id:
    # moving a data set does not re-key finished work.
    root: str | None = field(default=None, metadata=NOT_IDENTITY)
    # ImageNet subsets: the wnids to use with name = "imagenet" (imagenet10 and imagenette have built-in lists).
    classes: tuple[str, ...] | None = None
    # ImageNet subsets and folder are resized (shorter side) and centre-cropped to this many pixels.
    resolution: int = 128
    # digits, and a folder without val/: the fixed, seeded, stratified train/test split.
    test_fraction: float = 0.2
    split_seed: int = 0
    # Where the training set lives: "auto" keeps it on the training device as tensors when it fits. Neither this
    # nor the worker count changes a result (the batches are the same), so neither is part of the id.
    placement: str = field(default="auto", metadata=NOT_IDENTITY)
    workers: int = field(default=4, metadata=NOT_IDENTITY)
    # ZCA-whiten the images (fitted on the training split): true (or "mtt") as MTT does for CIFAR; "frepo" or
    # "kip" into FRePo's (and RCIG's) or KIP's whitening space, for their whitened sets (see data/zca.py).
    zca: bool | str = False
    # The name of a data set of the user's (folder, tensors, a factory: required there): it enters the experiment
    # id and is the results' dataset= partition, so two folders never share results. Letters, digits, - and _.
    label: str | None = None
    # tensors: how the arrays hold images, "nchw" or "nhwc"; unset (or "auto"), it is told from the shape.
    layout: str | None = None
    # folder: [height, width] to resize to, for images that are not square (else resolution x resolution).
    size: tuple[int, ...] | None = None
    # A factory (name = "package.module:function"): the keyword arguments it is called with.
    options: Table | None = None

    def __post_init__(self):
        from dpcluster.data.registry import SOURCE_FIELDS, check_data_name, readers, source_for, source_names

        check(isinstance(self.zca, bool) or self.zca in ZCA_STYLES, "zca",
              f"must be true, false or one of {', '.join(ZCA_STYLES)}; got {self.zca!r}")
        if self.zca == "mtt":  # the same whitening as true, and the same id
            object.__setattr__(self, "zca", True)
        check_data_name(self.name, "name")
        if self.options is not None and not isinstance(self.options, Table):  # given as a dict, in code
            object.__setattr__(self, "options", Table.of(self.options, "options"))
        source = source_for(self.name)
        check(not source.needs_root or self.root is not None, "root",
              f"data set {self.name!r} needs a root folder (it is never downloaded)")
        check(not source.needs_label or self.label is not None, "label",
              f"data set {self.name!r} is the user's own: name it with data.label (letters, digits, - and _), "
              f"which keeps its results apart from other data sets'")
        if self.label is not None:
            check(bool(_LABEL.fullmatch(self.label)), "label",
                  f"must be letters, digits, '-' or '_', got {self.label!r}")
            check(self.label == self.name or self.label not in source_names(), "label",
                  f"{self.label!r} is the name of a built-in data set; choose another label")
        for key in SOURCE_FIELDS:
            check(getattr(self, key) is None or key in source.reads, key,
                  f"data set {self.name!r} does not read {key} (only {readers(key)} reads it)")
        check(self.layout is None or self.layout in ("auto", "nchw", "nhwc"), "layout",
              f"must be one of auto, nchw, nhwc; got {self.layout!r}")
        if self.layout == "auto":  # the same as unset, and the same id
            object.__setattr__(self, "layout", None)
        check(self.size is None or (len(self.size) == 2 and all(n >= 1 for n in self.size)), "size",
              f"must be [height, width], both >= 1, got {list(self.size or ())}")
        source.check(self)
        check(self.resolution >= 8, "resolution", f"must be >= 8, got {self.resolution}")
        check(0.0 < self.test_fraction < 1.0, "test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        check_choice(self.placement, ("auto", "device", "loader"), "placement")
        check(self.workers >= 0, "workers", f"must be >= 0, got {self.workers}")

    @property
    def zca_style(self) -> str | None:
        """Whose whitening space the data is in ("mtt", "frepo", "kip"), or None where it is not whitened."""
        return None if self.zca is False else ("mtt" if self.zca is True else self.zca)

    @property
    def partition_name(self) -> str:
        """The results' dataset= partition value (and the data set's name in cache folders): the label where
        there is one, else the name."""
        return self.label or self.name


_LABEL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ModelSpec(Spec):
    name: str = "convnet"
    # ConvNet only (the papers' ConvNet: depth 3, width 128, instance norm, average pooling).
    depth: int = 3
    width: int = 128
    norm: str = "instancenorm"
    pooling: str = "avgpooling"
    # A network of the user's: ``name = "package.module:function"`` (a factory called with the data's input
    # shape, its number of classes and these options) or ``"torchvision:NAME"`` (torchvision's builder, called
    # with these options). Both enter the id, with the network's parameter shapes; ``version`` is for a factory
    # whose code changed in a way neither shows (bump it, and old results are not reused).
    options: Table | None = None
    version: int | None = None

    def __post_init__(self):
        from dpcluster.models.registry import check_network_name
        from dpcluster.user_code import is_user_name

        check_network_name(self.name, "name")
        if self.options is not None and not isinstance(self.options, Table):  # given as a dict, in code
            object.__setattr__(self, "options", Table.of(self.options, "options"))
        check(self.options is None or is_user_name(self.name), "options",
              f"only a user network (name = 'package.module:function' or 'torchvision:NAME') takes options; "
              f"{self.name} has its own settings")
        check(1 <= self.depth <= 8, "depth", f"must be in 1..8, got {self.depth}")
        check(self.width >= 1, "width", f"must be >= 1, got {self.width}")
        check_choice(self.norm, ("instancenorm", "batchnorm", "layernorm", "none"), "norm")
        check_choice(self.pooling, ("avgpooling", "maxpooling", "none"), "pooling")


@dataclass(frozen=True)
class TrainingSpec(Spec):
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 15
    batch_size: int = 128
    # Multiply the learning rate by gamma at each of these epochs (schedule "milestones"), or once at half the
    # epochs (schedule "half", MTT's evaluation of a distilled set).
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    schedule: str = "milestones"
    augmentation: str = "none"

    def __post_init__(self):
        check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(all(m >= 1 for m in self.milestones) and list(self.milestones) == sorted(self.milestones),
              "milestones", f"must be increasing epochs >= 1, got {list(self.milestones)}")
        check(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")
        check_choice(self.schedule, SCHEDULES, "schedule")
        check(self.schedule == "milestones" or not self.milestones, "milestones",
              f"schedule {self.schedule!r} sets its own milestones; remove milestones or use schedule = 'milestones'")
        check_choice(self.augmentation, (*AUGMENTATIONS, "auto"), "augmentation")

    @property
    def lr_milestones(self) -> tuple[int, ...]:
        """The epochs (0-based) from which the learning rate is multiplied by gamma once more."""
        if self.schedule == "half":
            return (self.epochs // 2,) if self.epochs >= 2 else ()
        return self.milestones

    def with_auto_augmentation(self, kind: str) -> TrainingSpec:
        """This spec with augmentation "auto" replaced by ``kind`` (the augmentation a set was distilled with)."""
        return self.replace(augmentation=kind) if self.augmentation == "auto" else self


# data.zca's whitening spaces (dpcluster/data/zca.py: STYLES).
ZCA_STYLES = ("mtt", "frepo", "kip")


def round_reaching(sparsity: float, rate: float) -> int:
    """The first round at or past ``sparsity`` when each round removes ``rate`` of the remaining weights: the
    smallest r with 1 - (1 - rate)^r >= sparsity."""
    return math.ceil(math.log(1 - sparsity) / math.log(1 - rate) - 1e-9)


def sparsity_after(rounds: int, rate: float) -> float:
    """The sparsity ``rounds`` rounds reach, each removing ``rate`` of the remaining weights (nominal: the masks
    keep the nearest whole number of weights)."""
    return 1 - (1 - rate) ** rounds


def grid_label(values: dict) -> str:
    """Grid values as the text results carry in their "grid" column: ``key=value`` pairs, keys sorted, values as
    TOML writes them (so the text reads back with :func:`grid_values`)."""
    return ", ".join(f"{key}={_toml_value(values[key])}" for key in sorted(values))


def _toml_value(value) -> str:
    import tomli_w

    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[4:].strip()


def grid_values(label: str | None) -> dict:
    """The values of a "grid" column's text (:func:`grid_label`), by dotted key; empty for None."""
    import tomllib

    if not label:
        return {}
    out = {}
    for pair in _GRID_PAIRS.findall(label):
        key, _, value = pair.partition("=")
        out[key] = tomllib.loads(f"v = {value}")["v"]
    return out


def grid_columns(labels: list) -> dict[str, list]:
    """A column per grid key for rows with these "grid" texts (None where a row's experiment had none), keys
    sorted. Labels are few (one per grid point), so each is parsed once."""
    parsed = {label: grid_values(label) for label in set(labels)}
    keys = sorted({key for values in parsed.values() for key in values})
    return {key: [parsed[label].get(key) for label in labels] for key in keys}


# A "key=value" pair of a grid label; values may be lists or strings holding ", " themselves.
_GRID_PAIRS = re.compile(r'[\w.]+=(?:\[[^\]]*\]|"(?:[^"\\]|\\.)*"|[^,]+)')


_REWIND = re.compile(r"^(\d+)(ep|it)$")


@dataclass(frozen=True)
class RewindPoint:
    """Where rewinding returns to: ``amount`` epochs (``unit == "ep"``) or iterations (``"it"``)."""

    amount: int
    unit: str

    def steps(self, steps_per_epoch: int) -> int:
        return self.amount * steps_per_epoch if self.unit == "ep" else self.amount


@dataclass(frozen=True)
class PruningSpec(Spec):
    # Fraction of the remaining weights removed each round.
    rate: float = 0.2
    strategy: str = "global"
    # Module names (e.g. "classifier") whose weights are never pruned.
    ignore: tuple[str, ...] = ()
    # Give one of these; with neither, 20 rounds are run (98.8% sparsity).
    target_sparsity: float | None = None
    rounds: int | None = None
    # IMP rewinds to this point of real-data training: "0ep" (initialisation), "1ep", "500it", ...
    rewind: str = "0ep"
    # Train every round's subnetwork on real data and record its test accuracy.
    validate: bool = True
    # hybrid: distilled rounds make every mask up to this sparsity, real-data IMP rounds (rewinding where IMP does)
    # the sparser ones.
    hybrid_switch: float = 0.5

    DEFAULT_ROUNDS = 20

    def __post_init__(self):
        check(0 < self.rate < 1, "rate", f"must be in (0, 1), got {self.rate}")
        check(self.strategy != "random", "strategy",
              "random pruning is the method 'random' (method = \"random\"); strategy is global or layerwise")
        check_choice(self.strategy, STRATEGIES, "strategy")
        check(self.target_sparsity is None or self.rounds is None, "rounds",
              "give either rounds or target_sparsity, not both")
        # No pruning at all is the method dense, not a mask search of no rounds.
        if self.target_sparsity is not None:
            check(0 < self.target_sparsity < 1, "target_sparsity",
                  f"must be in (0, 1), got {self.target_sparsity} (for no pruning, use the method dense)")
        if self.rounds is not None:
            check(1 <= self.rounds <= 200, "rounds",
                  f"must be in 1..200, got {self.rounds} (for no pruning, use the method dense)")
        check(_REWIND.match(self.rewind) is not None, "rewind",
              f"must look like 0ep, 1ep or 500it; got {self.rewind!r}")
        check(0 <= self.hybrid_switch < 1, "hybrid_switch", f"must be in [0, 1), got {self.hybrid_switch}")

    @property
    def num_rounds(self) -> int:
        if self.rounds is not None:
            return self.rounds
        if self.target_sparsity is not None:
            if self.target_sparsity == 0:
                return 0
            return round_reaching(self.target_sparsity, self.rate)
        return self.DEFAULT_ROUNDS

    def identity_dict(self) -> dict:
        # The schedule is its number of rounds, however given (target_sparsity 0.9 and rounds 11 are one experiment).
        out = super().identity_dict()
        out.pop("target_sparsity", None)
        out["rounds"] = self.num_rounds
        return out

    @property
    def rewind_point(self) -> RewindPoint:
        amount, unit = _REWIND.match(self.rewind).groups()
        return RewindPoint(int(amount), unit)


@dataclass(frozen=True)
class DMSpec(Spec):
    """Distribution matching (Zhao & Bilen)."""

    iterations: int = 300
    # Learning rate of the synthetic images (SGD, momentum 0.5).
    lr: float = 1.0
    real_per_class: int = 64

    def __post_init__(self):
        check(self.iterations >= 0, "iterations", f"must be >= 0, got {self.iterations}")
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(self.real_per_class >= 1, "real_per_class", f"must be >= 1, got {self.real_per_class}")


@dataclass(frozen=True)
class MTTSpec(Spec):
    """Trajectory matching (Cazenavette et al.): expert trajectories, then a student matched to them."""

    # Expert trajectories: this many networks trained on real data (plain SGD, as MTT's buffer.py), parameters
    # saved after every epoch.
    experts: int = 5
    trajectory_epochs: int = 10
    expert_lr: float = 0.05
    expert_batch_size: int = 64
    # Distillation: each iteration starts a student at a random expert epoch below max_start_epoch (MTT's
    # randint(0, max_start_epoch)), trains it syn_steps steps on the synthetic set, and matches where the expert
    # was expert_epochs later.
    iterations: int = 100
    syn_steps: int = 20
    expert_epochs: int = 2
    max_start_epoch: int = 4
    lr_images: float = 100.0
    lr_lr: float = 1e-4
    # The learnable student learning rate starts here; it is saved with the set.
    lr_init: float = 0.05
    # Synthetic images per student step (memory); None uses the whole set every step.
    batch_syn: int | None = None
    # Clip the norm of the images' and the learning rate's gradients (None, the default: no clipping, as MTT). A
    # guard to opt into where unrolled second-order gradients spike; the set records how often it cut.
    grad_clip: float | None = None

    def __post_init__(self):
        for key in ("experts", "trajectory_epochs", "expert_batch_size", "syn_steps", "expert_epochs"):
            check(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        check(self.iterations >= 0, "iterations", f"must be >= 0, got {self.iterations}")
        check(self.max_start_epoch >= 1, "max_start_epoch", f"must be >= 1, got {self.max_start_epoch}")
        # The last start (max_start_epoch - 1) plus expert_epochs must be an epoch the experts saved (0..E).
        check(self.max_start_epoch - 1 + self.expert_epochs <= self.trajectory_epochs, "max_start_epoch",
              f"max_start_epoch - 1 + expert_epochs ({self.max_start_epoch} - 1 + {self.expert_epochs}) must not "
              f"exceed trajectory_epochs ({self.trajectory_epochs})")
        for key in ("expert_lr", "lr_images", "lr_lr", "lr_init"):
            check(getattr(self, key) > 0, key, f"must be > 0, got {getattr(self, key)}")
        check(self.batch_syn is None or self.batch_syn >= 1, "batch_syn", f"must be >= 1, got {self.batch_syn}")
        check(self.grad_clip is None or self.grad_clip > 0, "grad_clip", f"must be > 0, got {self.grad_clip}")


# The DistilledSpec fields only a set read from a file takes, with their defaults.
_FILE_ONLY = {"zca": False, "normalization": UPSTREAM, "labels": AUTO, "entry": None}


@dataclass(frozen=True)
class DistilledSpec(Spec):
    """Where the distilled set comes from: distilled here ("dm", "mtt") or read from ``path`` ("file")."""

    source: str = "dm"
    # source = "file": where the set is; "{ipc}" in it stands for images_per_class (one template for a sweep
    # over set sizes, e.g. "/data/mtt/cifar10/ipc{ipc}").
    path: str | None = None
    # source = "file": the project's format, or a format of the code that made the set ("mtt", "dc", "npz",
    # "images"; see dpcluster/distilled/formats/).
    format: str = "dpcluster"
    # source = "file": the images are ZCA-whitened as data.zca whitens (MTT's --zca, as its CIFAR sets are); such a
    # set is only used with data.zca = true. The project's own format records this itself; image files hold pixels.
    zca: bool = False
    # source = "file": the space the images are stored in: "upstream" (the constants the format's own code
    # normalizes this data set with; pixels for image files), "data", "pixels" or "MEAN,.../STD,..." per channel.
    # The images are converted to the data's normalization on import.
    normalization: str = UPSTREAM
    # source = "file": how float labels are read: "auto" (as the format's code means them), "hard" (each row's
    # argmax) or "softmax" (rows as logits). Soft labels are trained on with soft cross-entropy.
    labels: str = AUTO
    # source = "file" with a format holding several sets per file (DC's res_*.pt, one per experiment): which one;
    # by default the file must hold one.
    entry: int | None = None
    images_per_class: int = 10
    # Augmentation while distilling, kept with the set; "auto" is DSA, without flips on digits.
    augmentation: str = "auto"
    # The set is shared by every experiment seed; this seed makes it.
    seed: int = 0
    # The network the set is distilled with; by default the experiment's (see distillation_model).
    model: ModelSpec | None = None
    dm: DMSpec = field(default_factory=DMSpec)
    mtt: MTTSpec = field(default_factory=MTTSpec)
    # Train on the set with the learning rate it was distilled with, when it carries one.
    use_learned_lr: bool = True
    # Distribution matching: the module whose output is the network's embedding (a user network's, by the name
    # the network gives it); by default the built-ins' own, or the input of a network's last nn.Linear.
    embedding: str | None = None

    def __post_init__(self):
        # The distillers and the set formats by name (importing them loads no torch).
        from dpcluster.distilled.normalization import parse_normalization
        from dpcluster.distilled.registry import FILE_SOURCE, LABEL_READINGS, format_names, get_format, source_names

        check_choice(self.source, source_names(), "source")
        check(not self.from_file or self.path is not None, "path",
              f"source '{FILE_SOURCE}' needs the path of the set")
        check(self.from_file or self.path is None, "path",
              f"a path is only read with source = '{FILE_SOURCE}' (source is {self.source!r})")
        check_choice(self.format, format_names(), "format")
        check(self.images_per_class >= 1, "images_per_class", f"must be >= 1, got {self.images_per_class}")
        check_choice(self.augmentation, DISTILL_AUGMENTATIONS, "augmentation")
        check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        check(self.from_file or not self.zca, "zca",
              "only a set read from a file says whether it is ZCA-whitened; a set distilled here follows data.zca")
        try:
            parse_normalization(self.normalization)
        except ValueError as error:
            raise SpecError("normalization", str(error)) from None
        check_choice(self.labels, LABEL_READINGS, "labels")
        check(self.entry is None or self.entry >= 0, "entry", f"must be >= 0, got {self.entry}")
        for key, default in _FILE_ONLY.items():
            check(self.from_file or getattr(self, key) == default, key,
                  f"only a set read from a file (source = '{FILE_SOURCE}') takes it")
        form = get_format(self.format)
        check(self.entry is None or form.entries, "entry", f"format {self.format!r} holds one set per file")
        if form.self_describing:
            for key in ("zca", "normalization"):
                check(getattr(self, key) == _FILE_ONLY[key], key,
                      f"format {self.format!r} records its whitening and normalization itself")

    def identity_dict(self) -> dict:
        """A set distilled here does not depend on how a file would be read: the reading fields added after ``zca``
        are left out, so they kept the ids (and cached sets) of every distilled-here experiment."""
        out = super().identity_dict()
        if not self.from_file:
            for key in ("normalization", "labels"):
                del out[key]
        return out

    @property
    def from_file(self) -> bool:
        """Whether the set is read from ``path`` (source "file") rather than distilled here."""
        from dpcluster.distilled.registry import FILE_SOURCE

        return self.source == FILE_SOURCE

    @property
    def set_path(self) -> str | None:
        """``path`` with ``{ipc}`` replaced by ``images_per_class``."""
        return None if self.path is None else self.path.replace("{ipc}", str(self.images_per_class))


def _default_distilled_training() -> TrainingSpec:
    # MTT's evaluation of a set (which the papers use for the inner loop): SGD with momentum 0.9 and weight decay
    # 5e-4, batch 256, the learning rate cut by 10x at half the epochs, training with the augmentation the set was
    # distilled with ("auto"). A set is tiny: many epochs (the papers use 1000-3000 on CIFAR).
    return TrainingSpec(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, epochs=100, batch_size=256,
                        schedule="half", gamma=0.1, augmentation="auto")


def _default_model() -> ModelSpec:
    # The default experiment is the built-in digits run: the papers' ConvNet scaled to 8x8 images (two blocks end at
    # 2x2 maps, as three end at 4x4 on 32x32 CIFAR) and to a width whose random subnetworks fail at sparsities
    # where lottery tickets still train, so the default run shows the effect. ModelSpec's own defaults stay the
    # papers' ConvNet-128 (depth 3), what `[model] name = "convnet"` alone means.
    return ModelSpec(name="convnet", depth=2, width=32)


def _default_training() -> TrainingSpec:
    # Sized for digits (1,437 training images): 10 epochs reach the dense accuracy.
    return TrainingSpec(optimizer="sgd", lr=0.05, epochs=10, batch_size=128)


@dataclass(frozen=True)
class ExperimentSpec(Spec):
    """One experiment. Its defaults are the built-in run on digits; the papers' settings are the specs in jobs/.
    A partial table (``[model] width = 64``) changes these defaults, not ModelSpec's own."""

    method: str = "distilled"
    seed: int = 0
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=_default_model)
    pruning: PruningSpec = field(default_factory=PruningSpec)
    distilled: DistilledSpec = field(default_factory=DistilledSpec)
    # Training on the distilled set (the inner loop of distilled pruning).
    distilled_training: TrainingSpec = field(default_factory=_default_distilled_training)
    # Training on real data (IMP's inner loop, validation of every subnetwork, the dense baseline).
    training: TrainingSpec = field(default_factory=_default_training)
    # The values a sweep's [grid] gave this experiment (dotted key -> value), carried to its results' "grid"
    # column; a label, not a setting: the fields themselves hold the values (and make the id).
    grid: Table | None = field(default=None, metadata=NOT_IDENTITY)

    def __post_init__(self):
        check_choice(self.method, method_names(), "method")
        check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        check(self.training.augmentation != "auto", "training.augmentation",
              "'auto' is for distilled_training (the augmentation the set was distilled with)")

    def identity_dict(self) -> dict:
        """Only what this experiment's results depend on: a method that trains on no distilled set does not depend
        on the distilled settings, one that does not prune not on the pruning schedule (so a sweep that changes the
        distilled learning rate does not re-run IMP)."""
        out = super().identity_dict()
        from dpcluster.models.registry import get_network

        if get_network(self.model.name).user:
            # A user network is what its code builds: its parameter shapes for this data (building it imports
            # torch and the user's code, and reads the data's shape, once per process).
            from dpcluster.models.user import architecture

            out["model"]["architecture"] = architecture(self.model, self.data)
        method = get_method(self.method)
        if not method.uses_distilled_set:
            del out["distilled"], out["distilled_training"]
        if not method.prunes:
            del out["pruning"]
        return out

    @functools.cached_property
    def experiment_id(self) -> str:
        # Kept with the (frozen) spec: planning a sweep asks for it once per job, and hashing is most of planning.
        return self.content_hash()

    @property
    def uses_distilled_set(self) -> bool:
        return get_method(self.method).uses_distilled_set

    @property
    def grid_label(self) -> str | None:
        """The grid values as one text, ``model.width=64, training.lr=0.01`` (keys sorted), or None."""
        return grid_label(self.grid.as_dict()) if self.grid else None

    @property
    def set_size(self) -> int:
        """Images per class of the distilled set the method trains on; 0 for methods that use none."""
        return self.distilled.images_per_class if self.uses_distilled_set else 0

    @property
    def rewind_point_used(self) -> str | None:
        """Where real-data training rewinds to, for methods that rewind; None for the others."""
        return self.pruning.rewind if get_method(self.method).rewinds else None

    @property
    def name(self) -> str:
        return f"{self.method}-s{self.seed}-{self.experiment_id}"
