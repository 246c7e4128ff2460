"""What an experiment is: its arms and its settings, as plain frozen data.

``bnlab.lab.experiments`` (the seed notebooks' experiments), ``bnlab.lab.studies`` (the
paper-shaped studies) and ``bnlab.lab.experiment_file`` (experiments read from TOML) all build
these; ``experiments.trial_config`` turns one arm and one seed into a trial's config. An experiment's
``claims`` are the paper's statements its report gives a verdict on (``bnlab.results.claims``).
"""

from dataclasses import dataclass, field

from bnlab.results.claims import Claim, check  # noqa: F401  (Claim: the name studies import)


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    model: dict  # keyword arguments of bnlab.models.build
    # An experiment file's arm: its own batch_size and/or learning_rate, taken as given.
    training: dict = field(default_factory=dict)
    # The studies (bnlab.lab.studies): a batch size of its own, with the learning rate scaled
    # linearly and the steps inversely, so every arm sees as many images (Goyal et al. 2017);
    # ``length``: this arm's steps as a fraction of the experiment's.
    batch_size: int | None = None
    length: float = 1.0
    # What a study's figures plot the arm as: its curve (``group``, e.g. the norm) and its place
    # on the x axis (``x``, e.g. the batch size); the report reads these, never the arm's name.
    group: str | None = None
    x: float | str | None = None
    schedule: dict | None = None  # this arm's own learning-rate schedule (Experiment.schedule)

    def scaling(self, experiment):
        """B/B₀ of an arm with a scaled batch size of its own (1 for every other arm)."""
        return self.batch_size / experiment.batch_size if self.batch_size else 1.0


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    seed_source: str  # which seed notebook(s) it reproduces
    description: str
    dataset: str
    model: str
    arms: tuple[Arm, ...]
    optimizer: dict  # {"name": Keras optimizer class name, "learning_rate": float, other args}
    batch_size: int
    split: dict  # keyword arguments of bnlab.data.load: validation=N or validation_split=f
    preprocessing: str  # "scale" or "standardize"
    epochs: int | None = None
    steps: int | None = None  # step-based training (seed 003) instead of epochs
    comparisons: tuple[dict, ...] = ()  # {"a": arm, "b": arm, "question": "..."}
    # "predictions" (seed 002), "single_sample" (seed 003); bnlab.lab.measure's "test_curve",
    # "precise_bn"
    extras: tuple[str, ...] = ()
    log_every: dict = field(default_factory=dict)  # step-based: {"batch": 25, "validation": 100}
    source: str | None = None  # the TOML file of an experiment read from one
    probe: dict | None = None  # bnlab.tools.probe's spec: {"layers": ["bn"], "every": 50, ...}
    quick: dict = field(default_factory=dict)  # --quick: {"steps", "limit", "seeds", "arms"}
    seeds: int | None = None  # how many seeds ``bnlab run`` trains by default (3 when None)
    # step trials: a decaying learning rate (bnlab.lab.recipe.learning_rate), e.g.
    # {"name": "steps", "at": [0.5, 0.75], "factor": 0.1}
    schedule: dict | None = None
    precise_samples: tuple[int, ...] = ()  # extra "precise_bn": PreciseBN also from these many
    # The paper's claims (bnlab.results.claims.Claim), judged on paired seeds in the report.
    claims: tuple[Claim, ...] = ()

    def __post_init__(self):
        names = [arm.name for arm in self.arms]
        for claim in self.claims:
            check(claim, names)

    @property
    def x_axis(self):
        return "step" if self.steps else "epoch"

    def arm(self, name):
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)
