"""The sweep spec (TOML under ``jobs/``): which experiments to run, as lists, over a base experiment.

    name = "digits-small"
    datasets = ["digits"]
    models = ["convnet"]
    methods = ["imp", "distilled", "random"]
    seeds = [0, 1, 2]
    sparsities = [0.5, 0.8, 0.9]      # validated levels; each is reached by the first round at or past it
    rewinds = ["0ep", "1ep"]          # for the methods that rewind (imp, hybrid); default: base.pruning.rewind
    images_per_class = [10]           # distilled-set sizes (for distilled and hybrid)

    [axes.hybrid]                     # per method: fewer rewind points or set sizes than the sweep's
    rewinds = ["1ep"]
    images_per_class = [50]

    [base]                            # an ExperimentSpec: training, pruning, distilled settings
    training = { epochs = 15 }

    [data.cifar10]                    # DataSpec fields for one data set (its root, ...), over [base.data]; a
    root = "/data/cifar"              # `name` makes the entry a data set of yours ([data.flowers] name = "folder")

    [sets.50]                         # per distilled-set size: TrainingSpec fields of the inner loop, over
    lr = 0.01                         # [base.distilled_training]
    epochs = 1000

    analyses = ["stability", "sharpness"]   # per validated level: see dpcluster/sweeps/kinds/
    [analysis]                        # how they measure (AnalysisSpec)
    points = 11
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from dpcluster.errors import SpecError, UserError
from dpcluster.specs import DataSpec, ExperimentSpec, ModelSpec, Spec, TrainingSpec, check, check_choice
from dpcluster.specs.base import Table, coerce_value
from dpcluster.specs.experiment import round_reaching, sparsity_after
from dpcluster.methods.registry import method_names
from dpcluster.data.registry import check_data_name
from dpcluster.models.registry import check_network_name


@dataclass(frozen=True)
class MethodAxes(Spec):
    """Per method of a sweep (``[axes.METHOD]``): a subset of the sweep's rewind points and set sizes that this
    method alone takes (a costly method at one setting beside cheap ones at every setting). Unset: all of them."""

    rewinds: tuple[str, ...] | None = None
    images_per_class: tuple[int, ...] | None = None


@dataclass(frozen=True)
class AnalysisSpec(Spec):
    """How the analyses of a sweep's levels measure (the ``[analysis]`` table)."""

    # Linear mode connectivity: evenly spaced networks on the path between the two copies, ends included.
    points: int = 11
    # Loss-landscape plane: a size × size grid over [-span, span]² of two filter-normalised directions.
    grid_size: int = 11
    grid_span: float = 1.0
    # Hessian sharpness on the first this-many training examples: the largest and smallest eigenvalues by Lanczos
    # iteration (converged when their residual is within this tolerance, relative; about this many products
    # each) and Hutchinson's trace estimator with this many Rademacher vectors.
    hessian_examples: int = 512
    hessian_iterations: int = 100
    hessian_tolerance: float = 1e-3
    hutchinson_samples: int = 20
    # Kept-weight histograms: bins per layer.
    histogram_bins: int = 40
    # The loss plane: of the training loss with BatchNorm's statistics as trained (Li et al.'s "train", the
    # default), or of the test loss with them recomputed at every point ("test").
    landscape_split: str = "train"
    # Every fixed measurement subset (the Hessian's batch, BatchNorm's recomputation, the examples the curves and
    # the plane are measured on) is a class-stratified draw with this seed: the same for every method and level.
    subset_seed: int = 0
    # Examples the curves and the plane are measured on (None: the whole split), and training examples BatchNorm
    # statistics are recomputed on at each interpolated (or, for a "test" plane, displaced) network.
    test_examples: int | None = None
    batchnorm_examples: int = 2048
    # The levels the analyses measure, each the first validated round at or past it (as the sweep's sparsities
    # are); empty: every validated level. The dense network, a method's only level, is always measured.
    sparsities: tuple[float, ...] = ()

    def __post_init__(self):
        check(self.points >= 3, "points", f"must be >= 3, got {self.points}")
        check(self.grid_size >= 3 and self.grid_size % 2 == 1, "grid_size",
              f"must be an odd number >= 3 (so the trained network is on the grid), got {self.grid_size}")
        check(self.grid_span > 0, "grid_span", f"must be > 0, got {self.grid_span}")
        for key in ("hessian_examples", "hessian_iterations", "hutchinson_samples", "histogram_bins",
                    "batchnorm_examples"):
            check(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        check(self.hessian_tolerance > 0, "hessian_tolerance", f"must be > 0, got {self.hessian_tolerance}")
        check(self.test_examples is None or self.test_examples >= 1, "test_examples",
              f"must be >= 1, got {self.test_examples}")
        check_choice(self.landscape_split, ("train", "test"), "landscape_split")
        check(self.subset_seed >= 0, "subset_seed", f"must be >= 0, got {self.subset_seed}")
        for i, level in enumerate(self.sparsities):
            check(0 < level < 1, f"sparsities[{i}]", f"must be in (0, 1), got {level}")


@dataclass(frozen=True)
class SweepSpec(Spec):
    name: str = "sweep"
    datasets: tuple[str, ...] = ("digits",)
    models: tuple[str, ...] = ("convnet",)
    methods: tuple[str, ...] = ("dense", "imp", "distilled", "random")
    seeds: tuple[int, ...] = (0,)
    # Validated sparsity levels; empty: every round of the base spec's pruning schedule.
    sparsities: tuple[float, ...] = ()
    images_per_class: tuple[int, ...] = (10,)
    # Rewind points for the methods that rewind (imp, hybrid), e.g. ["0ep", "1ep"] to compare IMP rewound to
    # initialisation with IMP rewound to epoch 1; empty: base.pruning.rewind alone.
    rewinds: tuple[str, ...] = ()
    base: ExperimentSpec = field(default_factory=ExperimentSpec)
    # Partial tables over a field of the base (checked as that field's keys and types, applied by with_values):
    # per data set (keyed by its entry in datasets), DataSpec fields such as its root folder; per distilled-set
    # size (keyed by images per class), TrainingSpec fields of the inner loop (the papers tune lr and epochs).
    data: tuple[tuple[str, Table], ...] = ()
    sets: tuple[tuple[int, Table], ...] = ()
    # Per method (keyed by name): the rewind points and set sizes it takes, a subset of the sweep's.
    axes: tuple[tuple[str, MethodAxes], ...] = ()
    # Keep every level's trained network (SWEEP/masks/<experiment>/trained/), for `dpcluster export`: one state
    # dict a level (the network's size in float32).
    keep_trained: bool = True
    # Failed jobs are retried this many times when the sweep is run again.
    max_retries: int = 2
    # Analyses of every validated level (stability, landscape, sharpness, kept_weights), and how they measure.
    analyses: tuple[str, ...] = ()
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)
    # Any other field of the experiments as an axis: dotted key -> its values ("training.lr" = [0.01, 0.05]).
    # The sweep runs the product of every key's values with its other axes; results carry them in "grid".
    grid: Table | None = None

    def __post_init__(self):
        # The name is the default folder (sweeps/NAME): "." or ".." would be the current folder or sweeps/ itself.
        check(bool(self.name) and all(c.isalnum() or c in "-_." for c in self.name) and
              any(c.isalnum() for c in self.name), "name",
              f"must be letters, digits, '-', '_' or '.', with a letter or digit, got {self.name!r}")
        check(len(self.methods) > 0, "methods", "must not be empty")
        for i, value in enumerate(self.methods):
            check_choice(value, method_names(), f"methods[{i}]")
        check(len(self.datasets) > 0, "datasets", "must not be empty")
        sources = {entry: dict(table)["name"] for entry, table in self.data if "name" in dict(table)}
        for i, entry in enumerate(self.datasets):
            if entry not in sources:  # else a label, its data set named by [data.ENTRY]
                check_data_name(entry, f"datasets[{i}]")
        check(len(self.models) > 0, "models", "must not be empty")
        for i, name in enumerate(self.models):
            check_network_name(name, f"models[{i}]")
        check(len(self.seeds) > 0 and all(s >= 0 for s in self.seeds), "seeds", "must be a non-empty list of seeds >= 0")
        pruning = self.base.pruning
        for i, s in enumerate(self.sparsities):
            check(0 < s < 1, f"sparsities[{i}]", f"must be in (0, 1), got {s}")
            reached = round_reaching(s, pruning.rate)
            check(reached <= pruning.num_rounds, f"sparsities[{i}]",
                  f"{s} is first reached at round {reached}, but the mask search stops after {pruning.num_rounds} "
                  f"rounds ({sparsity_after(pruning.num_rounds, pruning.rate):.1%} sparsity); raise "
                  f"base.pruning.rounds or base.pruning.target_sparsity")
        check(len(self.images_per_class) > 0 and all(k >= 1 for k in self.images_per_class), "images_per_class",
              "must be a non-empty list of counts >= 1")
        check(self.max_retries >= 0, "max_retries", f"must be >= 0, got {self.max_retries}")
        for i, rewind in enumerate(self.rewinds):
            try:
                self.base.pruning.replace(rewind=rewind)
            except SpecError as error:
                raise SpecError(f"rewinds[{i}]", error.message) from None
        known = analysis_names()
        for i, name in enumerate(self.analyses):
            check_choice(name, known, f"analyses[{i}]")
        validated = self.rounds()
        for i, level in enumerate(self.analysis.sparsities):
            reached = round_reaching(level, pruning.rate)
            check(reached in validated, f"analysis.sparsities[{i}]",
                  f"{level} is first reached at round {reached} ({sparsity_after(reached, pruning.rate):.1%} sparsity), "
                  f"which the sweep does not validate" + (f": add {level} to sparsities" if reached <= pruning.num_rounds
                                                          else f"; the mask search stops after {pruning.num_rounds} "
                                                               f"rounds"))
        self._check_grid()
        for name, _ in self.data:
            check(name in self.datasets, f"data.{name}", f"{name!r} is not one of the sweep's datasets")
        for size, _ in self.sets:
            check(size in self.images_per_class, f"sets.{size}", f"{size} is not one of images_per_class")
            self.distilled_training(size)  # a bad value names sets.N.field
        for method, axes in self.axes:
            check(method in self.methods, f"axes.{method}", f"{method!r} is not one of the sweep's methods")
            for key, allowed in (("rewinds", self.rewind_choices(method, narrowed=False)),
                                 ("images_per_class", self.images_per_class)):
                chosen = getattr(axes, key)
                if chosen is None:
                    continue
                check(len(chosen) > 0, f"axes.{method}.{key}", "must not be empty (leave it out for all of them)")
                for i, value in enumerate(chosen):
                    check(value in allowed, f"axes.{method}.{key}[{i}]",
                          f"{value!r} is not one of the sweep's {key} ({', '.join(map(repr, allowed))})")

    @classmethod
    def from_dict(cls, data):
        # [data.NAME] and [sets.N] tables arrive as mappings; keep them as sorted (key, choice) pairs so the
        # spec hashes.
        data = dict(data)
        tables = {"data": data.pop("data", {}), "sets": data.pop("sets", {}), "axes": data.pop("axes", {})}
        # The data sets are checked with their tables (an entry may be a label that [data.ENTRY] defines).
        datasets = coerce_value(data.pop("datasets"), tuple[str, ...], "datasets") if "datasets" in data else None
        spec = super().from_dict(data)
        return spec.replace(data=_choices(tables["data"], "data", partial_of(DataSpec), str),
                            sets=_choices(tables["sets"], "sets", partial_of(TrainingSpec), int),
                            axes=_choices(tables["axes"], "axes", MethodAxes.from_dict, str),
                            **({} if datasets is None else {"datasets": datasets}))

    def to_dict(self):
        out = super().to_dict()
        out["data"] = {name: table.as_dict() for name, table in self.data}
        out["sets"] = {str(size): table.as_dict() for size, table in self.sets}
        out["axes"] = {method: axes.to_dict() for method, axes in self.axes}
        return out

    def _check_grid(self) -> None:
        from dpcluster.specs.base import value_at

        for key, values in (self.grid.as_dict() if self.grid else {}).items():
            where = f'grid."{key}"'
            check(key not in GRID_AXES, where, f"{key} is an axis of the sweep already ({GRID_AXES.get(key)})")
            try:
                leaf = value_at(self.base, key)
            except KeyError:
                raise SpecError(where, "no such field of an experiment spec (write its dotted key, e.g. "
                                       "training.lr)") from None
            check(not isinstance(leaf, Spec), where, f"{key} is a table; name one of its fields")
            check(isinstance(values, list) and len(values) > 0, where, "must be a non-empty list of values")
            check(len(set(map(repr, values))) == len(values), where, f"lists a value twice: {values}")
            for i, value in enumerate(values):
                try:
                    self.base.with_values({key: value})
                except SpecError as error:
                    raise SpecError(f"{where}[{i}]", error.message) from None

    def grid_points(self) -> list[dict]:
        """Every combination of the grid's values (dotted key -> value), keys in sorted order; [{}] without a
        grid."""
        import itertools

        grid = self.grid.as_dict() if self.grid else {}
        keys = sorted(grid)
        return [dict(zip(keys, combination)) for combination in itertools.product(*(grid[key] for key in keys))]

    def with_assignments(self, assignments, option: str = "--set") -> "SweepSpec":
        """This sweep with ``KEY=VALUE`` texts applied in order: a key naming the sweep's own fields (``seeds``,
        ``data.cifar10.root``, ``grid."training.lr"``) sets it, any other key its base experiment
        (``training.lr`` is ``base.training.lr``; ``data.root`` is the base's data, ``data.NAME.KEY`` one data
        set's table)."""
        from dpcluster.specs.base import parse_assignment

        spec = self
        for text in assignments:
            key, value, _ = parse_assignment(text)
            head, *rest = key.split(".")
            if head == "grid" and rest:
                # A grid key is dotted itself: grid.training.lr=[...] is the [grid] entry "training.lr".
                grid = {**(spec.grid.as_dict() if spec.grid else {}), ".".join(rest): value}
                try:
                    spec = SweepSpec.from_dict({**spec.to_dict(), "grid": grid})
                except SpecError as error:
                    raise UserError(f"{option} {key}: {error.message}") from None
                continue
            # data.root is the base's data; data.NAME.KEY a data set's table.
            own = head in {f.name for f in fields(self)} and head != "base" and (head != "data" or len(rest) > 1)
            spec = Spec.with_assignments(spec, [text if own else f"base.{text}"], option)
        return spec

    def data_spec(self, name: str) -> DataSpec:
        """The data set ``name`` as the sweep's experiments see it: [base.data], then its [data.NAME] table."""
        settings = dict(self.data).get(name, Table()).as_dict()
        if "name" in settings:  # the entry is the label of a data set of the user's
            settings.setdefault("label", name)
        settings.setdefault("name", name)
        try:
            return self.base.data.with_values(settings)
        except SpecError as error:
            raise error.under(f"data.{name}") from None

    def distilled_training(self, images_per_class: int) -> TrainingSpec:
        """Training on a set of ``images_per_class``: [base.distilled_training], then its [sets.N] table."""
        try:
            return self.base.distilled_training.with_values(dict(self.sets).get(images_per_class, Table()).as_dict())
        except SpecError as error:
            raise error.under(f"sets.{images_per_class}") from None

    def rewind_choices(self, method: str, narrowed: bool = True) -> tuple[str, ...]:
        """The rewind points a method's experiments take: the sweep's ``rewinds`` for methods that rewind (or its
        ``[axes.METHOD]`` subset), else the base spec's (which changes nothing for them)."""
        from dpcluster.methods.registry import get_method

        if self.rewinds and get_method(method).rewinds:
            chosen = self.axes_of(method).rewinds if narrowed else None
            return self.rewinds if chosen is None else chosen
        return (self.base.pruning.rewind,)

    def set_sizes(self, method: str) -> tuple[int, ...]:
        """The distilled-set sizes a method's experiments take: the sweep's (or its ``[axes.METHOD]`` subset) for
        methods that use a set, else one (which changes nothing for them)."""
        from dpcluster.methods.registry import get_method

        if not get_method(method).uses_distilled_set:
            return self.images_per_class[:1]
        chosen = self.axes_of(method).images_per_class
        return self.images_per_class if chosen is None else chosen

    def axes_of(self, method: str) -> MethodAxes:
        """The method's ``[axes.METHOD]`` table (an empty one, taking every setting, where it has none)."""
        return dict(self.axes).get(method, MethodAxes())

    def model_spec(self, name: str) -> ModelSpec:
        base = self.base.model
        return base if base.name == name else ModelSpec(name=name)

    def rounds(self) -> tuple[int, ...]:
        """The validated rounds: the first round at or past each sparsity level (or every round)."""
        pruning = self.base.pruning
        if not self.sparsities:
            return tuple(range(1, pruning.num_rounds + 1))
        return tuple(sorted({round_reaching(s, pruning.rate) for s in self.sparsities}))

    def analysed_rounds(self) -> tuple[int, ...]:
        """The validated rounds the analyses measure: those reaching ``analysis.sparsities``, or every one."""
        rate = self.base.pruning.rate
        if not self.analysis.sparsities:
            return self.rounds()
        return tuple(sorted({round_reaching(s, rate) for s in self.analysis.sparsities}))


# The experiment fields a sweep's own axes set (a grid over them would be overwritten), and which axis.
GRID_AXES = {"method": "methods", "seed": "seeds", "data.name": "datasets", "data.label": "datasets",
             "model.name": "models", "pruning.rewind": "rewinds", "distilled.images_per_class": "images_per_class",
             "grid": "grid"}


def analysis_names() -> tuple[str, ...]:
    """The registered job kinds a sweep can ask for by name in ``analyses``."""
    from dpcluster.sweeps.jobs import get_kind, kind_names

    return tuple(name for name in kind_names() if get_kind(name).analysis)


def partial_of(kind: type[Spec]):
    """A reader of partial tables of ``kind``'s fields (see ``partial_table``)."""
    from dpcluster.specs.base import partial_table

    return lambda table: partial_table(kind, table)


def _choices(tables, key: str, make, key_type: type) -> tuple:
    """``[key.NAME]`` tables as sorted (NAME, made) pairs; errors name ``key.NAME.field``."""
    if not isinstance(tables, dict):
        raise SpecError(key, f"must be a table of [{key}.NAME] tables")
    out = []
    for name, table in tables.items():
        try:
            typed_name = key_type(name)
        except ValueError:
            raise SpecError(f"{key}.{name}", f"must be a {key_type.__name__}") from None
        if not isinstance(table, dict):
            raise SpecError(f"{key}.{name}", f"must be a table ([{key}.{name}] with its keys), got {table!r}")
        try:
            out.append((typed_name, make(table)))
        except SpecError as error:
            raise error.under(f"{key}.{name}") from None
    return tuple(sorted(out))
