"""Plain PyTorch (``torch.nn``) twins of bnlab's seed models and their training loop.

The same model, batch size, optimizer and data as bnlab's arm, as a PyTorch user writes it (eager,
a hand loop). Different by nature: NCHW (Flatten orders LeNet's features differently; "same"
padding at stride 2 pads (1, 1), Keras (0, 1)); the MLPs end in logits (``F.cross_entropy``);
RMSprop's and Adam's eps outside the square root (Keras: inside); no accuracy metric.

    python bench/torch_models.py --check   # parameter counts and multiply-adds vs Keras (JSON)
"""

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bnlab import models
from bnlab.lab import estimate, experiments
from common import emit, log

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "sigmoid": nn.Sigmoid}


def _init(layer, he=False):
    """Keras's initializers: glorot_uniform, or he_normal (truncated at ±2 std), zero biases."""
    if he:
        std = math.sqrt(2.0 / layer.in_features) / 0.87962566103423978
        nn.init.trunc_normal_(layer.weight, 0.0, std, -2 * std, 2 * std)
    else:
        nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def build(name, *, norm="keras", placement="after", activation=None, momentum=0.99, epsilon=1e-3):
    """The torch twin of ``bnlab.models.build(name, ...)`` (``norm="scratch"`` = torch's BN too)."""
    use_bn = norm != "none"
    act = ACTIVATIONS[activation or ("sigmoid" if name == "lenet" else "relu")]

    def bn(channels, conv=False):  # [the BN layer], or [] without BN
        layer = nn.BatchNorm2d if conv else nn.BatchNorm1d
        return [layer(channels, eps=epsilon, momentum=1.0 - momentum)] if use_bn else []

    def dense_block(fan_in, units, bias):
        if placement == "after":
            return [_init(nn.Linear(fan_in, units)), act(), *bn(units)]
        return [_init(nn.Linear(fan_in, units, bias=bias)), *bn(units), act()]
    if name == "mlp":
        layers = [nn.Flatten(), *bn(784)]
        for fan_in, units in ((784, 300), (300, 100)):
            if use_bn:
                layers += dense_block(fan_in, units, bias=False)
            else:  # seed 004's baseline
                layers += [_init(nn.Linear(fan_in, units), he=True),
                           nn.LeakyReLU(0.3) if activation is None else act()]
        layers.append(_init(nn.Linear(100, 10)))
    elif name == "deep-mlp":
        layers = [nn.Flatten()]
        for fan_in in [784] + [100] * 19:
            layers += (dense_block(fan_in, 100, bias=True) if use_bn
                       else [_init(nn.Linear(fan_in, 100)), act()])
        layers.append(_init(nn.Linear(100, 10)))
    elif name == "lenet":
        layers = []
        for cin, cout in ((1, 6), (6, 16)):
            layers += [_init(nn.Conv2d(cin, cout, 5)), *bn(cout, conv=True), act(),
                       nn.MaxPool2d(2, 2)]
        layers.append(nn.Flatten())
        for fan_in, units in ((256, 120), (120, 84)):
            layers += [_init(nn.Linear(fan_in, units)), *bn(units), act()]
        layers += [_init(nn.Linear(84, 10)), nn.Sigmoid()]
    elif name == "deep-cnn":
        layers, cin = [], 1
        for i in range(1, 20):
            conv = nn.Conv2d(cin, 4 * i, 3, stride=2 if i % 3 == 0 else 1, padding=1,
                             bias=not use_bn)
            layers += [_init(conv), *bn(4 * i, conv=True), act()]
            cin = 4 * i  # 1×1×76 after the loop's 6 strides
        layers += [nn.Flatten(), _init(nn.Linear(cin, 100, bias=not use_bn)), *bn(100), act(),
                   _init(nn.Linear(100, 10))]
    elif name == "study-cnn":  # bnlab.models' study CNN; the norm's options are BN's here
        layers, cin = [], 1
        for i, cout in enumerate((16, 32, 64)):
            layers += [nn.MaxPool2d(2, 2)] if i else []
            layers += [_init(nn.Conv2d(cin, cout, 3, padding=1, bias=not use_bn)),
                       *bn(cout, conv=True), act()]
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), _init(nn.Linear(64, 10))]
    else:
        raise ValueError(f"unknown model {name!r}")
    return nn.Sequential(*layers)


def normalized_sigmoid_ce(p, y):
    """LeNet's loss as Keras computes it on its ten sigmoids: normalized, clipped, −log p[label]."""
    p = p / p.sum(dim=1, keepdim=True)
    return F.nll_loss(torch.log(p.clamp(1e-7, 1.0 - 1e-7)), y)


# loss(output, target) with Keras's semantic for each model (the deep CNN: one-hot float targets)
LOSSES = {"mlp": F.cross_entropy, "deep-mlp": F.cross_entropy, "study-cnn": F.cross_entropy,
          "lenet": normalized_sigmoid_ce, "deep-cnn": F.binary_cross_entropy_with_logits}


def optimizer(params, spec):
    """torch's optimizer of the same name as Keras's ``spec``, with Keras's defaults."""
    options = {"SGD": {"momentum": spec.get("momentum", 0.0)},
               "RMSprop": {"alpha": 0.9, "eps": 1e-7},
               "Adam": {"betas": (0.9, 0.999), "eps": 1e-7}}[spec["name"]]
    return getattr(torch.optim, spec["name"])(params, lr=spec["learning_rate"], **options)


def train_block(config, x, y):
    """A block of training steps of ``config``'s twin over bnlab's arrays ``x`` (NHWC), ``y``."""
    torch.manual_seed(config["seed"])
    name, spec = config["model"]["name"], {k: v for k, v in config["model"].items() if k != "name"}
    model = build(name, **spec).train()
    opt, loss_fn = optimizer(model.parameters(), config["optimizer"]), LOSSES[name]
    x, y = np.asarray(x), np.asarray(y)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if x.ndim == 4 else x,
                                              dtype="float32"))
    y = torch.from_numpy(y.astype("int64" if y.ndim == 1 else "float32"))
    batch = config["batch_size"]

    def block():
        for start in range(0, len(x), batch):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[start:start + batch]), y[start:start + batch]).backward()
            opt.step()
    return block


def forward_macs(model, shape):
    """Multiply-accumulates of one example's forward pass (``shape``), module by module."""
    x, macs = torch.zeros((2, *shape)), 0
    with torch.no_grad():
        for module in model.eval():
            x = module(x)
            if isinstance(module, nn.Linear):
                macs += module.in_features * module.out_features
            elif isinstance(module, nn.Conv2d):  # each output value: k × k × in_channels
                macs += x[0].numel() * math.prod(module.kernel_size) * module.in_channels
    return macs


def check():
    """Keras's and the twin's counts and multiply-adds of every arm (and the MLPs' as scratch)."""
    variants = []
    for exp in experiments.EXPERIMENTS.values():
        for arm in exp.arms:
            # of the studies, only the arms the bench times against PyTorch have twins
            if exp.seed_source == "study" and not (exp.model == "study-cnn"
                                                   and arm.model.get("norm") == "keras"):
                continue
            variants.append((exp.name, arm.name, exp.model, arm.model))
            if arm.model.get("norm") == "keras" and exp.model in ("mlp", "deep-mlp"):
                variants.append((exp.name, arm.name + "[scratch]", exp.model,
                                 {**arm.model, "norm": "scratch"}))
    rows = []
    for experiment, arm, name, spec in variants:
        keras_model, twin = models.build(name, **spec), build(name, **spec)
        trainable = sum(p.numel() for p in twin.parameters())
        # BN's moving statistics: Keras's non-trainable weights, torch's buffers (with a counter)
        buffers = sum(b.numel() for n, b in twin.named_buffers()
                      if not n.endswith("num_batches_tracked"))
        counts = {"keras": tuple(int(c) for c in models.count_params(keras_model)),
                  "torch": (trainable + buffers, trainable, buffers)}
        macs = forward_macs(twin, (1, 28, 28) if name in models.CONVOLUTIONAL else (28, 28))
        ok = counts["keras"] == counts["torch"] and macs == estimate.multiply_adds(keras_model)
        rows.append({"experiment": experiment, "arm": arm, **counts, "macs": macs, "ok": ok})
    return rows


def main(argv):
    if argv != ["--check"]:
        sys.exit(__doc__)  # the usage, exit status 1
    torch.set_num_threads(2)
    rows = check()
    for r in rows:
        log(f"{r['experiment']:>12} {r['arm']:<22} keras {r['keras']} torch {r['torch']} "
            f"fwd MACs {r['macs']:,}  {'ok' if r['ok'] else 'MISMATCH'}")
    emit({"rows": rows, "ok": all(r["ok"] for r in rows)})  # the report marks a mismatch


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
