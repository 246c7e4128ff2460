"""Experiments written in TOML files, in the same terms as the built-in ones.

    load(path) -> Experiment        read, check and turn a file into an ``Experiment``
    find(paths) -> [path]           the ``*.toml`` files named, or found in the folders named

A file names the experiment and fixes what ``bnlab.lab.experiments.Experiment`` fixes::

    name = "norms-at-batch-8"            # required; not a built-in experiment's name
    title = "..."                        # optional (default: the name), and description
    dataset = "fashion_mnist"            # fashion_mnist (default) or mnist
    model = "study-cnn"                  # required: a bnlab.models model
    preprocessing = "scale"              # scale (default) or standardize
    split = { validation = 5000 }        # or { validation_split = 0.2 } (default 5000 images)
    optimizer = { name = "SGD", learning_rate = 0.01 }   # a keras.optimizers class
    batch_size = 32
    epochs = 5                           # or steps = 800 (exactly one)

    [[arms]]                             # any number of arms, each with its model options
    name = "bn"                          # (norm, placement, activation, momentum, epsilon,
    norm = "keras"                       #  norm_options) and, if it differs from the
    batch_size = 8                       #  experiment's, its own batch_size and learning_rate

    [grid]                               # and/or a grid: every combination is one arm, named
    norm = ["keras", "group"]            # after its values ("keras-8"), in the order written
    batch_size = [8, 32]

    [[comparisons]]                      # optional: arm a against arm b
    a = "group-8"
    b = "keras-8"
    question = "GN vs BN at batch 8"

    [[claims]]                           # optional: a paper's claim, judged on paired seeds
    statement = "BN's error rises from batch 32 to 8"   # required (bnlab.results.claims)
    a = "keras-8"                        # required: an arm, or ["x", "y"] for x − y
    b = "keras-32"                       # optional (default 0): an arm or ["x", "y"]
    metric = "error:test_accuracy"       # default test_accuracy; steps_to:KEY:T, points:KEY;
                                         # with a = ["x", "y"] also ["x's metric", "y's"]
    direction = "greater"                # greater (a − b > 0), less, or equal (with margin)
    margin = 1.5                         # equal only: |a − b| < margin, in the metric's units
    paper = "23.6 % -> 34.7 %"           # the paper's own figure, as text
    otherwise = "..."                    # optional: the likely reason, should it not appear

The experiment's and the arms' names become folder and file names (``runs/NAME/``, saved models,
TensorBoard folders), so each must be one plain file name (``bnlab.paths.check_name``: not empty,
no '/' or '\\', no leading dot, no control characters, at most 100 bytes).

Every mistake raises ``FileError``, one line naming the file, the key and the allowed values; a
file that loads is a valid experiment, so nothing is run or written before it is checked.
"""

import itertools
import tomllib
from pathlib import Path

from bnlab import data as bndata
from bnlab import models
from bnlab import paths
from bnlab.errors import UserError
from bnlab.lab.experiments import EXPERIMENTS, Arm, Experiment
from bnlab.results import claims as claim_spec


class FileError(UserError):
    """A mistake in an experiment file: one line, naming the file and the key."""


# Each key of a file, an arm and a grid: the types it takes (bool is never an int here).
TOP_KEYS = {"name": str, "title": str, "description": str, "dataset": str, "model": str,
            "preprocessing": str, "split": dict, "optimizer": dict, "batch_size": int,
            "epochs": int, "steps": int, "arms": list, "grid": dict, "comparisons": list,
            "claims": list}
MODEL_KEYS = {"norm": str, "placement": str, "activation": str, "momentum": float,
              "epsilon": float, "norm_options": dict}
TRAINING_KEYS = {"batch_size": int, "learning_rate": float}
ARM_KEYS = {"name": str, "label": str, **MODEL_KEYS, **TRAINING_KEYS}
GRID_KEYS = {k: v for k, v in {**MODEL_KEYS, **TRAINING_KEYS}.items() if k != "norm_options"}
SPLIT_KEYS = {"validation": int, "validation_split": float}
OPTIMIZER_KEYS = {"name": str, "learning_rate": float}
COMPARISON_KEYS = {"a": str, "b": str, "question": str}
# a claim's a and b: an arm's name (str) or a pair of them (list); checked in _Checker.term
CLAIM_KEYS = {"statement": str, "a": (str, list), "b": (str, list), "metric": (str, list),
              "metric_b": (str, list), "direction": str, "margin": float, "paper": str,
              "otherwise": str}
PREPROCESSING = ("scale", "standardize")
OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion")
TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "a table",
              list: "an array", (str, list): "a name or an array of two"}


def find(paths):
    """The experiment files among ``paths``: each file as named, each folder's ``*.toml``."""
    found = []
    for path in map(Path, paths):
        found += sorted(path.glob("*.toml")) if path.is_dir() else [path]
    return found


def load(path):
    """The ``Experiment`` a TOML file describes (its ``source`` is the path)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise FileError(f"{path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise FileError(f"{path}: not valid TOML: {exc}") from None
    return _Checker(path).experiment(doc)


class _Checker:
    """Checks one file's tables, raising FileError with the file and the key's path."""

    def __init__(self, path):
        self.path = path

    def fail(self, key, message):
        raise FileError(f"{self.path}: {key}: {message}")

    def table(self, doc, keys, where="", required=()):
        """Every key known and of its type; the required ones present."""
        for key, value in doc.items():
            name = f"{where}{key}"
            if key not in keys:
                self.fail(name, f"unknown key; allowed: {', '.join(keys)}")
            self.typed(name, value, keys[key])
        for key in required:
            if key not in doc:
                self.fail(f"{where}{key}", "missing")
        return doc

    def typed(self, name, value, kind):
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
              else isinstance(value, kind) and not isinstance(value, bool))
        if not ok:
            self.fail(name, f"expected {TYPE_NAMES[kind]}, got {value!r}")

    def choice(self, name, value, allowed):
        if value not in allowed:
            self.fail(name, f"unknown {value!r}; allowed: {', '.join(allowed)}")

    def positive(self, name, value):
        if value <= 0:
            self.fail(name, f"must be positive, got {value!r}")

    def file_name(self, key, name, what="the name"):
        """A name that becomes a folder or file name (``bnlab.paths.check_name``)."""
        try:
            return paths.check_name(name, what)
        except paths.PathError as exc:
            self.fail(key, str(exc))

    def experiment(self, doc):
        self.table(doc, TOP_KEYS, required=("name", "model", "optimizer", "batch_size"))
        name = self.file_name("name", doc["name"])
        if name in EXPERIMENTS:
            self.fail("name", f"{name!r} is a built-in experiment; choose another name")
        self.choice("model", doc["model"], tuple(models.BUILDERS))
        self.choice("dataset", doc.setdefault("dataset", "fashion_mnist"), tuple(bndata.DATASETS))
        self.choice("preprocessing", doc.setdefault("preprocessing", "scale"), PREPROCESSING)
        split = self.table(doc.get("split", {"validation": 5000}), SPLIT_KEYS, "split.")
        if len(split) != 1:
            self.fail("split", "give one of validation (images) or validation_split (fraction)")
        if "validation_split" in split and not 0 < split["validation_split"] < 1:
            self.fail("split.validation_split", "must be between 0 and 1")
        if split.get("validation", 0) < 0:
            self.fail("split.validation", "must be 0 or more")
        optimizer = self.table(doc["optimizer"], OPTIMIZER_KEYS, "optimizer.",
                               required=("name", "learning_rate"))
        self.choice("optimizer.name", optimizer["name"], OPTIMIZERS)
        self.positive("optimizer.learning_rate", optimizer["learning_rate"])
        self.positive("batch_size", doc["batch_size"])
        if ("epochs" in doc) == ("steps" in doc):
            self.fail("epochs", "give exactly one of epochs or steps")
        length = "epochs" if "epochs" in doc else "steps"
        self.positive(length, doc[length])
        arms = self.arms(doc)
        return Experiment(
            name=name, title=doc.get("title", name), seed_source="file",
            description=doc.get("description", ""), dataset=doc["dataset"], model=doc["model"],
            arms=arms, optimizer={"name": optimizer["name"],
                                  "learning_rate": float(optimizer["learning_rate"])},
            batch_size=doc["batch_size"], split=dict(split), preprocessing=doc["preprocessing"],
            epochs=doc.get("epochs"), steps=doc.get("steps"),
            comparisons=self.comparisons(doc.get("comparisons", []), arms),
            claims=self.claims(doc.get("claims", []), arms),
            log_every={"batch": 25, "validation": 100} if "steps" in doc else {},
            source=str(self.path))

    def arms(self, doc):
        arms = []
        for i, arm in enumerate(doc.get("arms", [])):
            where = f"arms[{i}]."
            self.typed(where[:-1], arm, dict)
            self.table(arm, ARM_KEYS, where, required=("name",))
            options = {k: v for k, v in arm.items() if k not in ("name", "label")}
            arms.append(self.arm(arm["name"], arm.get("label", arm["name"]), options, where))
        grid = self.table(doc.get("grid", {}), {k: list for k in GRID_KEYS}, "grid.")
        for key, values in grid.items():
            if not values:
                self.fail(f"grid.{key}", "an empty list")
            for j, value in enumerate(values):
                self.typed(f"grid.{key}[{j}]", value, GRID_KEYS[key])
        for values in itertools.product(*grid.values()) if grid else ():
            options = dict(zip(grid, values))
            name = "-".join(str(v) for v in values)
            label = ", ".join(f"{k} {v}" for k, v in options.items())
            arms.append(self.arm(name, label, options, f"grid ({label})."))
        if not arms:
            self.fail("arms", "no arms: give [[arms]] tables or a [grid]")
        names = [arm.name for arm in arms]
        for name in names:
            self.file_name("arms", name, "arm name")
            if names.count(name) > 1 or "," in name:
                self.fail("arms", f"arm name {name!r} is repeated or holds a comma")
        return tuple(arms)

    def arm(self, name, label, options, where):
        """One arm: its model options checked as bnlab.models.build checks them."""
        model = {k: v for k, v in options.items() if k in MODEL_KEYS}
        norm = model.get("norm", "keras")
        self.choice(f"{where}norm", norm, models.NORMS)
        if "placement" in model:
            self.choice(f"{where}placement", model["placement"], models.PLACEMENTS)
        try:
            models.check_norm_options(norm, model.get("momentum"), model.get("epsilon"),
                                model.get("norm_options"))
        except UserError as exc:
            self.fail(f"{where}norm_options", str(exc))
        for key in ("batch_size", "learning_rate"):
            if key in options:
                self.positive(f"{where}{key}", options[key])
        training = {k: TRAINING_KEYS[k](v) for k, v in options.items() if k in TRAINING_KEYS}
        return Arm(name, label, model, training)

    def comparisons(self, comparisons, arms):
        names = [arm.name for arm in arms]
        for i, comparison in enumerate(comparisons):
            where = f"comparisons[{i}]."
            self.typed(where[:-1], comparison, dict)
            self.table(comparison, COMPARISON_KEYS, where, required=("a", "b"))
            for key in ("a", "b"):
                self.choice(f"{where}{key}", comparison[key], names)
            comparison.setdefault("question", f"{comparison['a']} vs {comparison['b']}")
        return tuple(dict(c) for c in comparisons)


    def claims(self, claims, arms):
        """Each [[claims]] table, key by key, as a bnlab.results.claims.Claim."""
        names = [arm.name for arm in arms]
        out = []
        for i, claim in enumerate(claims):
            where = f"claims[{i}]."
            self.typed(where[:-1], claim, dict)
            self.table(claim, CLAIM_KEYS, where, required=("statement", "a"))
            fields = dict(claim)
            for key in ("a", "b"):
                if key in fields:
                    fields[key] = self.term(f"{where}{key}", fields[key], names)
            for key in ("metric", "metric_b"):  # a pair term's metrics, x's and y's
                if isinstance(fields.get(key), list):
                    if len(fields[key]) != 2 or not all(isinstance(m, str) for m in fields[key]):
                        self.fail(f"{where}{key}", f"a metric or an array of two, got "
                                                   f"{fields[key]!r}")
                    fields[key] = tuple(fields[key])
            if "direction" in fields:
                self.choice(f"{where}direction", fields["direction"], claim_spec.DIRECTIONS)
            if "margin" in fields:
                fields["margin"] = float(fields["margin"])
            try:
                out.append(claim_spec.Claim(**fields))
            except ValueError as exc:  # "field: message", from claims.check
                field, _, message = str(exc).partition(": ")
                self.fail(f"{where}{field}", message)
        return tuple(out)

    def term(self, name, value, arms):
        """An arm's name, or [x, y] (x − y): the arms known."""
        if isinstance(value, list):
            if len(value) != 2:
                self.fail(name, f"an array of two arms (x − y), got {value!r}")
            for j, arm in enumerate(value):
                self.typed(f"{name}[{j}]", arm, str)
                self.choice(f"{name}[{j}]", arm, arms)
            return tuple(value)
        self.choice(name, value, arms)
        return value


def is_file_name(name):
    """True when ``bnlab run NAME`` means a file: it ends in .toml or is a path to one."""
    return name.endswith(".toml") or Path(name).is_file()
