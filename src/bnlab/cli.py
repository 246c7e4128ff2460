"""The ``bnlab`` command line: parses, calls the layer below, prints. No logic of its own.

    bnlab list [PATH ...]              the built-in experiments and those in TOML files, one line each
    bnlab run EXPERIMENT [options]     train its trials (arm × seed) into the store, then report
    bnlab report EXPERIMENT            write runs/NAME/report.{md,html} and figures
    bnlab export tensorboard EXPERIMENT DIR   its trials' scalars as TensorBoard event files
    bnlab export mlflow EXPERIMENT     its trials as MLflow runs (--tracking-uri)
    bnlab summary MODEL [options]      model.summary() and each BN layer's variables
    bnlab check MODEL [--data DATA]    diagnose a trained model's BN (.keras or .pt2; own data)
    bnlab convert IN OUT               a PyTorch .pt2 to a Keras .keras or back, BN's conventions
    bnlab demo                         the main job: bn-placement on Fashion-MNIST (says how long first)
    (EXPERIMENT: a built-in experiment's name, or a TOML file: bnlab.lab.experiment_file)

User errors (``bnlab.errors.UserError``: unknown names, bad options, bad or missing data, a
broken store) print one line and exit 2, and so do the machine's refusals (a full disk, a
read-only folder); any other exception is a bug and shows its traceback. Ctrl-C and SIGTERM end a
command with one line and 130 or 143 (``bnlab.signals``); a run whose trials failed exits 1.
"""

import argparse
import os
import signal
import sys
from pathlib import Path

import bnlab  # noqa: F401  (chooses the default Keras backend before anything imports Keras)
from bnlab.errors import UserError, one_line

RUNS = Path("runs")  # where bnlab writes by default: the store, reports, saved models, MLflow runs
DEFAULT_STORE = RUNS / "bnlab.sqlite"
LIST_FOLDER = Path("experiments")  # where `bnlab list` looks for TOML experiments by default
# The main job: every arm of bn-placement on Fashion-MNIST at the seeds' 10 epochs, 3 seeds (the
# seeds of an arm trained together); it says first how long it expects (bnlab.lab.estimate).
DEMO = {"experiment": "bn-placement", "seeds": 3, "epochs": 10}
MAX_SEEDS = 1000  # a sweep's seeds; more is a typo, and each is one trial per arm in the store
FEW_TEST_IMAGES = 100  # below this, one image moves the test accuracy by more than a percent


def main(argv=None):
    from bnlab import signals

    with signals.handling():  # Ctrl-C or SIGTERM: one line and 130/143, whenever it comes
        return _main(argv, signals)


def _main(argv, signals):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code = args.func(args) or 0
    except KeyboardInterrupt:
        code = None
    except UserError as exc:
        if not signals.received():
            return _error(one_line(exc))
        code = None
    except OSError as exc:  # the machine refused (full disk, read-only folder): not a bug of bnlab
        if not signals.received():
            return _error(_os_error(exc))
        code = None
    if signals.received() or code is None:  # a signal some library swallowed still ends the run
        signum = signals.received() or signal.SIGINT
        signals.cancel_stray_timers()
        print(signals.message(signum), file=sys.stderr)
        return signals.exit_code(signum)
    return code


def _error(message):
    print(f"bnlab: error: {printable(message)}", file=sys.stderr)
    return 2


def printable(text):
    """``text`` for the terminal: control characters (escape sequences, newlines) shown escaped."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


def _os_error(exc):
    import errno

    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"{where}the disk is full (no space left on device); free some space and run again"
    if exc.errno == errno.EROFS:
        return f"{where}the file system is read-only; choose a writable folder"
    return f"{where}{exc.strerror or exc}"


def _parser():
    from bnlab import models
    from bnlab.data import DATASETS, arrays

    parser = argparse.ArgumentParser(prog="bnlab", description="A batch-normalization laboratory.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list the built-in experiments and those in TOML files")
    p.add_argument("paths", nargs="*", type=Path,
                   help="TOML files, or folders of them (default: ./experiments, if present)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run an experiment's trials (arm x seed) and write its report")
    p.add_argument("experiment")
    _add_run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write an experiment's report from the store")
    p.add_argument("experiment")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, help="results store (SQLite)")
    p.add_argument("--out", type=Path, help="output folder (default runs/EXPERIMENT)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export an experiment's trials to TensorBoard or MLflow")
    to = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    e = to.add_parser("tensorboard", help="event files, one folder per trial (DIR/EXPERIMENT/ARM/"
                                          "seed-N)")
    e.add_argument("experiment")
    e.add_argument("dir", type=Path, help="TensorBoard log folder")
    e.add_argument("--store", type=Path, default=DEFAULT_STORE, help="results store (SQLite)")
    e.set_defaults(func=cmd_export)
    e = to.add_parser("mlflow", help="one MLflow run per trial")
    e.add_argument("experiment")
    e.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else runs/mlruns)")
    e.add_argument("--store", type=Path, default=DEFAULT_STORE, help="results store (SQLite)")
    e.set_defaults(func=cmd_export)

    p = sub.add_parser("summary", help="print a model's summary and its norm layers' variables")
    p.add_argument("model", help=", ".join(models.BUILDERS))
    p.add_argument("--norm", default="keras", help=f"{', '.join(models.NORMS)} (default keras)")
    p.add_argument("--placement",
                   help=f"{' or '.join(models.PLACEMENTS)} (default: the model's own)")
    p.add_argument("--activation", help="override the model's activation (e.g. elu)")
    p.add_argument("--momentum", type=float)
    p.add_argument("--epsilon", type=float)
    p.add_argument("--norm-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an argument of the norm, e.g. groups=4, virtual_batch_size=16, "
                        "renorm_clipping={rmax=3,dmax=5} (a TOML value; repeatable)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("check", help="diagnose a trained model's BN layers on data")
    p.add_argument("model", type=Path, help="a .keras file (e.g. from bnlab run --save-models) or "
                                            "a PyTorch .pt2 (torch.export.save)")
    p.add_argument("--data", default="fashion_mnist",
                   help=f"{', '.join(DATASETS)}, a .npz (x_train/x_test[/y_train/y_test], or x[/y]), "
                        "a .npy of inputs, or a folder of images in class subfolders")
    p.add_argument("--data-dir", type=Path, help="where the built-in dataset files are")
    p.add_argument("--preprocessing", choices=arrays.PREPROCESSING,
                   help="as the model was trained: scale divides by 255, standardize uses the "
                        "training part's mean and std (default scale for built-in datasets, none "
                        "for one's own)")
    p.add_argument("--limit", type=_positive, default=5000,
                   help="training inputs for the population and test inputs scored (default 5000)")
    p.add_argument("--batch-size", type=_positive, default=32,
                   help="training-mode batch size (default 32)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("convert", help="a PyTorch .pt2 (torch.export.save) to a Keras .keras, "
                                       "or back; checked on a random batch")
    p.add_argument("source", type=Path, help="IN.pt2 or IN.keras")
    p.add_argument("target", type=Path, help="OUT.keras or OUT.pt2 (must not exist)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo", help="the main job: bn-placement on Fashion-MNIST, then its report")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, help="results store (SQLite)")
    p.add_argument("--data-dir", type=Path, help="where the dataset files are")
    p.set_defaults(func=cmd_demo)
    return parser


def _add_run_options(p):
    from bnlab.data import DATASETS
    from bnlab.lab import executors, multiseed, train

    p.add_argument("--arms", help="comma-separated arm names (default: all)")
    p.add_argument("--seeds", type=_positive, help="number of random seeds (default 3)")
    p.add_argument("--quick", action="store_true",
                   help="a study's quick form: its fewer steps, images, seeds and arms "
                        "(options given explicitly win)")
    p.add_argument("--out", type=Path, help="report folder (default runs/EXPERIMENT)")
    p.add_argument("--epochs", type=_positive, help="override the experiment's epochs")
    p.add_argument("--steps", type=_positive, help="override the experiment's steps (deep-cnn)")
    p.add_argument("--limit", type=_positive, help="use only the first N images of each split")
    p.add_argument("--dataset", help=f"{' or '.join(DATASETS)} (default: the experiment's)")
    p.add_argument("--data-dir", type=Path, help="where the dataset files are")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, help="results store (SQLite)")
    p.add_argument("--force", action="store_true", help="rerun trials already finished")
    p.add_argument("--no-report", action="store_true", help="do not write the report")
    p.add_argument("--save-models", action="store_true",
                   help="keep each trial run as OUT/models/ARM-sSEED-TRIALID.keras (OUT: --out, "
                        "default runs/EXPERIMENT)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--tensorboard", type=Path, metavar="DIR",
                   help="also write the trials' scalars as TensorBoard event files under DIR")
    p.add_argument("--path", choices=train.PATHS, default="auto",
                   help="auto: on JAX, the seeds of an arm of "
                        f"{', '.join(multiseed.VECTORIZED_MODELS)} train together as one compiled "
                        "program, other trials with Keras's fit; together: every arm's seeds "
                        "together (JAX); fit: each trial with Keras's fit (default auto)")
    p.add_argument("--executor", choices=executors.EXECUTORS, default="process",
                   help="process: train in this process; ray: each trial (or seeds-together "
                        "group) as a Ray task (default process)")
    p.add_argument("--address", help="with --executor ray: the Ray cluster to join (default: "
                                     "start a local Ray with this machine's cores)")


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# ----------------------------------------------------------------------------------------------


def cmd_list(args):
    from bnlab.lab import experiment_file
    from bnlab.lab.experiments import EXPERIMENTS

    paths = args.paths or [p for p in [LIST_FOLDER] if p.is_dir()]
    listed, errors = list(EXPERIMENTS.values()), []
    for path in experiment_file.find(paths):
        try:
            listed.append(experiment_file.load(path))
        except experiment_file.FileError as exc:
            errors.append(str(exc))
    width = max(len(exp.source or exp.name) for exp in listed)
    groups = (("seed notebooks", lambda e: not e.source and e.seed_source != "study"),
              ("studies (bnlab run NAME --quick for a small form)",
               lambda e: not e.source and e.seed_source == "study"),
              ("experiment files", lambda e: e.source))
    for heading, member in groups:
        members = [exp for exp in listed if member(exp)]
        if members:
            print(f"{heading}:")
        for exp in members:
            length = f"{exp.steps} steps" if exp.steps else f"{exp.epochs} epochs"
            origin = exp.seed_source if exp.source else f"seed {exp.seed_source}"
            print(printable(f"  {exp.source or exp.name:<{width}}  {origin:<14}  {exp.title}"))
            print(f"  {'':<{width}}  arms: {', '.join(a.name for a in exp.arms)}; "
                  f"{exp.dataset}, {exp.model}, {exp.optimizer['name']}, batch {exp.batch_size}, "
                  f"{length}")
            if exp.claims:  # the paper is in the title; its claims are the report's first table
                print(f"  {'':<{width}}  {len(exp.claims)} claims of the paper, each with a verdict "
                      "in the report")
    for error in errors:
        _error(error)
    return 2 if errors else 0


def cmd_run(args):
    from bnlab.lab import experiments
    from bnlab.data import DATASETS, DatasetError
    from bnlab.results.store import Store
    from bnlab.lab import executors, selection
    from bnlab.lab.sweep import run_trials
    from bnlab.lab.train import load_datasets

    experiment = _experiment(args.experiment)
    if args.quick and not experiment.quick:
        raise UserError(f"{experiment.name} has no --quick form; the studies have one: "
                        f"{', '.join(e.name for e in experiments.EXPERIMENTS.values() if e.quick)}")
    quick = experiment.quick if args.quick else {}
    args.seeds = args.seeds or quick.get("seeds") or experiment.seeds or 3
    args.steps = args.steps or quick.get("steps")
    args.limit = args.limit or quick.get("limit")
    if args.seeds > MAX_SEEDS:
        raise UserError(f"--seeds {args.seeds}: at most {MAX_SEEDS} seeds (each is one trial per "
                        "arm); a confidence interval needs a few, 3 to 10")
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise UserError(f"--data-dir {args.data_dir}: " + (
            "a file, not a folder" if args.data_dir.exists() else "no such folder"))
    if args.tensorboard is not None:
        _check_tensorboard_dir(args.tensorboard)
    report_dir = args.out or _runs_folder(experiment)
    if not args.no_report:
        _check_writable(report_dir, "pass --no-report, or run from a writable folder")
    arms = experiments.select_arms(experiment, _split_names(args.arms) or quick.get("arms"))
    if args.dataset and args.dataset not in DATASETS:
        raise UserError(f"unknown dataset {args.dataset!r}; known: {', '.join(DATASETS)}")
    if args.steps and not experiment.steps:
        raise UserError(f"{experiment.name} trains for epochs: use --epochs, not --steps")
    if args.epochs and experiment.steps:
        raise UserError(f"{experiment.name} trains for steps: use --steps, not --epochs")
    backend = os.environ["KERAS_BACKEND"]
    configs = [
        experiments.trial_config(experiment, arm, seed, dataset=args.dataset, epochs=args.epochs,
                                 steps=args.steps, limit=args.limit, backend=backend)
        for arm in arms for seed in range(1, args.seeds + 1)
    ]
    print(f"bnlab: {experiment.name}: {len(arms)} arm(s) x {args.seeds} seed(s) on "
          f"{configs[0]['dataset']} (backend {backend}); store {args.store}")
    if args.limit and args.limit < FEW_TEST_IMAGES:
        print(f"bnlab: warning: --limit {args.limit} scores each trial on at most {args.limit} "
              f"test image(s): below {FEW_TEST_IMAGES} the test accuracy says little about the "
              "model (one image moves it by more than a percent)", file=sys.stderr)
    datasets = None
    try:  # the data is checked before the store is opened: a bad --data-dir writes nothing
        if args.executor == "process":
            datasets = load_datasets(configs, args.data_dir)
    except DatasetError as exc:
        if configs[0]["dataset"] == "mnist":
            raise UserError(f"{exc} — or run this experiment on Fashion-MNIST instead: "
                            f"bnlab run {experiment.name} --dataset fashion_mnist") from None
        raise
    from bnlab import signals

    # the executor first: a cluster that cannot be joined leaves no store behind
    executor = executors.make(args.executor, address=args.address, data_dir=args.data_dir,
                              progress=not args.quiet, datasets=datasets,
                              save_models=((report_dir / "models").resolve()
                                           if args.save_models else None))
    with signals.writing(), Store(args.store) as store:
        run_trials(configs, store, force=args.force, data_dir=args.data_dir,
                   progress=not args.quiet, path=args.path, executor=executor)
        failed = [t for t in map(store.get, map(store.trial_id, configs))
                  if t is not None and t.status == "failed"]
        if len(failed) < len(configs):
            _print_summary(store, experiment, configs)
            if not args.no_report:
                _write_report(store, experiment, configs, report_dir)
            if args.tensorboard:
                _export_tensorboard(store, selection.trials(store, experiment, configs),
                                    args.tensorboard)
        if failed:
            print(f"bnlab: {len(failed)} of {len(configs)} trial(s) failed (first: {failed[0].arm} "
                  f"seed {failed[0].seed}: {printable(failed[0].error)}); run the same command "
                  "again to retry them", file=sys.stderr)
            return 1


def cmd_report(args):
    from bnlab import signals

    experiment = _experiment(args.experiment)
    out = args.out or _runs_folder(experiment)
    _check_writable(out, "choose another folder with --out")
    with signals.writing(), _existing_store(args.store, experiment) as store:
        _print_summary(store, experiment, None)
        _write_report(store, experiment, None, out)


def cmd_export(args):
    from bnlab import signals
    from bnlab.lab import selection

    experiment = _experiment(args.experiment)
    if args.target == "tensorboard":
        _check_tensorboard_dir(args.dir)
    with signals.writing(), _existing_store(args.store, experiment) as store:
        trials = selection.trials(store, experiment)
        if not trials:
            raise UserError(f"no finished trials of {experiment.name} in {store.path}; run "
                            f"`bnlab run {experiment.name}` first")
        if args.target == "tensorboard":
            return _export_tensorboard(store, trials, args.dir)
        from bnlab.results.export import DEFAULT_MLFLOW_URI, export_mlflow

        uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_URI
        figures = sorted(_runs_folder(experiment).glob("*.png"))  # the report's, if written
        try:
            done = export_mlflow(store, trials, uri, figures)
        except ImportError as exc:
            raise UserError(str(exc)) from None
        print(f"mlflow: {len(done['created'])} run(s) written, {len(done['unchanged'])} already "
              f"there and unchanged; tracking URI {uri}")
        if not figures:
            print(f"mlflow: no figures attached: `bnlab report {args.experiment}` writes them "
                  f"into {RUNS / experiment.name}, for the next export")


def _check_tensorboard_dir(out_dir):
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"cannot write TensorBoard files under {out_dir}: it is a file; give a "
                        "folder")


def _export_tensorboard(store, trials, out_dir):
    from bnlab.results.export import export_tensorboard

    try:
        folders = export_tensorboard(store, trials, out_dir)
    except ImportError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write TensorBoard files under {out_dir} ({exc.strerror or exc})"
                        ) from None
    print(f"tensorboard: {len(folders)} trial(s) under {out_dir}; view with "
          f"`tensorboard --logdir {out_dir}`")


def cmd_summary(args):
    from bnlab import models
    from bnlab.tools import summary

    model = models.build(args.model, norm=args.norm, placement=args.placement,
                         activation=args.activation, momentum=args.momentum,
                         epsilon=args.epsilon, norm_options=_norm_options(args.norm_option))
    model.summary()
    print("\n".join(summary.norm_layer_lines(model)))


def cmd_check(args):
    import json

    from bnlab.tools import check, load_model

    if not args.model.exists():
        raise UserError(f"no model file at {args.model}")
    from bnlab.seeding import set_seed

    set_seed(0)  # dropout's masks in training mode: the same on every run
    model, names, layout = load_model.load(args.model)
    check.require_one_input_output(model)
    data = _check_data(args, model, layout)
    result = check.check(model, data.x_train, data.x_test, data.y_test,
                         batch_size=args.batch_size, names=names, pytorch=layout != "nhwc")
    result["data"] = data.notes
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print("\n".join(f"data: {note}" for note in data.notes) + "\n")
        print(check.format_table(result))


def _check_data(args, model, layout):
    """A built-in dataset by name, or one's own file or folder (bnlab.data.arrays)."""
    from bnlab import data as bndata
    from bnlab.data import arrays

    input_shape = tuple(model.inputs[0].shape[1:])
    classes = model.outputs[0].shape[-1]
    if args.data in bndata.DATASETS:
        how = args.preprocessing or "scale"
        ds = bndata.load(args.data, args.data_dir, preprocessing=None if how == "none" else how)
        x_train, x_test = ds.x_train[:args.limit], ds.x_test[:args.limit]
        notes = [f"{args.data}: the first {len(x_train)} training images as the population, the "
                 f"first {len(x_test)} test images scored", f"preprocessing: {how}"]
        return arrays.UserData(x_train, None, x_test, ds.y_test[:args.limit], notes)
    if not any(ch in args.data for ch in "./\\") and not Path(args.data).exists():
        raise UserError(f"unknown dataset {args.data!r}: give {', '.join(bndata.DATASETS)}, a "
                        ".npz, a .npy or a folder of images in class subfolders")
    return arrays.load_user_data(Path(args.data), input_shape, num_classes=classes,
                                 preprocessing=args.preprocessing or "none", limit=args.limit,
                                 layout=layout)


def cmd_convert(args):
    try:
        from bnlab.tools.convert import files
    except ImportError as exc:  # torch is an extra
        raise UserError(f"bnlab convert needs PyTorch: pip install 'bnlab[torch]' ({exc})") from None
    print("\n".join(files.convert_file(args.source, args.target)))


def cmd_demo(args):
    from bnlab import models
    from bnlab.lab import estimate, experiments, runtime

    # The estimate runs XLA: its options must be the run's before JAX starts (configure_xla).
    runtime.configure_xla(vectorized=DEMO["seeds"] > 1)
    experiment = experiments.get(DEMO["experiment"])
    arms = len(experiment.arms)
    examples = 60_000 - experiment.split.get("validation", 0)
    expected, rate = estimate.seconds(models.build(experiment.model, norm="none"), examples,
                                      DEMO["epochs"], DEMO["seeds"], arms)
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    busy = (f"; the load average is {load:.0f} on {cores} cores now, so it will take longer"
            if load > cores else "")
    print(f"bnlab demo: {experiment.name}, {arms} arms × {DEMO['seeds']} seeds × "
          f"{DEMO['epochs']} epochs; this host multiplies at {rate:.0f} GFLOP/s, so expect about "
          f"{expected / 60:.0f} minutes on idle cores{busy}", file=sys.stderr, flush=True)
    run_args = _parser().parse_args([
        "run", DEMO["experiment"], "--seeds", str(DEMO["seeds"]), "--epochs", str(DEMO["epochs"]),
        "--store", str(args.store),
    ] + (["--data-dir", str(args.data_dir)] if args.data_dir else []))
    return cmd_run(run_args)


# ----------------------------------------------------------------------------------------------


def _experiment(name):
    """A built-in experiment by name, or the one a TOML file describes."""
    from bnlab.lab import experiment_file, experiments

    if experiment_file.is_file_name(name):
        return experiment_file.load(name)
    return experiments.get(name)


def _norm_options(items):
    """``--norm-option KEY=VALUE`` words as a dict; each VALUE is read as a TOML value."""
    import tomllib

    options = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            options.update(tomllib.loads(f"{key.strip()} = {value.strip()}"))
        except tomllib.TOMLDecodeError:
            raise UserError(f"--norm-option wants KEY=VALUE with a TOML value (groups=4, "
                            f"renorm_clipping={{rmax=3}}), got {item!r}") from None
    return options


def _existing_store(path, experiment):
    from bnlab.results.store import Store

    if not path.exists():
        raise UserError(f"no results store at {path}; run "
                        f"`bnlab run {experiment.source or experiment.name}` first")
    return Store(path, create=False, read_only=True)


def _runs_folder(experiment, *parts):
    """``runs/NAME/...``, refused unless it lies under ``runs/`` (``bnlab.paths.inside``)."""
    from bnlab import paths

    paths.inside(RUNS, experiment.name, *parts)
    return Path(RUNS, experiment.name, *parts)


def _split_names(text):
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError(f"--arms {text!r} names no arm; give comma-separated arm names")
    return names


def _check_writable(folder, fix):
    """Refuse, before any training, a report folder that is a file, cannot be written, or holds
    report files bnlab did not write (``bnlab.results.report.check_folder``)."""
    from bnlab.results import report

    report.check_folder(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder, so it cannot hold the report; {fix}")
    existing = next((p for p in [folder, *folder.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the report into {folder}: {existing} is not writable; "
                        f"{fix}")


def _print_summary(store, experiment, configs):
    from bnlab.lab import selection
    from bnlab.results import report

    trials = selection.trials(store, experiment, configs)
    if not trials:
        raise UserError(f"no finished trials of {experiment.name} in {store.path}; run "
                        f"`bnlab run {experiment.name}` first")
    rows = report.summary_rows(store, selection.report_spec(experiment, trials), trials=trials)
    others = len(store.trials(experiment.name)) - len(trials)
    if configs is None and others:
        print(f"bnlab: note: {others} other trial(s) named {experiment.name!r} in {store.path} "
              "(other settings, or another experiment of this name) are not in this report",
              file=sys.stderr)
    print()
    print(report.text_table(rows))
    for trial in trials:
        if trial.results.get("diverged"):
            print(f"diverged: {trial.arm} seed {trial.seed} (training loss not finite from "
                  f"{trial.results['diverged']})")


def _write_report(store, experiment, configs, out_dir):
    from bnlab.lab import selection
    from bnlab.results import report, sections

    trials = selection.trials(store, experiment, configs)
    spec = selection.report_spec(experiment, trials, command=True)
    paths = report.write_report(store, spec, out_dir, trials=trials,
                                sections=sections.for_experiment(spec))
    print(f"\nreport: {paths['markdown']}  (also {paths['html'].name} and the PNG figures in "
          f"{out_dir})")


if __name__ == "__main__":
    sys.exit(main())
