"""Plain PyTorch (``torch.nn``) twins of bnlab's seed models and their training loop.

The benchmark's third column: the same model, batch size, optimizer and data as bnlab's arm,
written the way a PyTorch user would write it (eager mode, ``torch.nn`` layers, a hand loop).

Same as Keras (bnlab.models): layer sizes, which layers have a bias, BN placement, activations,
initializers, BN's momentum (1 − Keras's) and epsilon, LeakyReLU's slope 0.3, and so the
parameter counts (``--check``; torch's ``num_batches_tracked`` counter is not a weight).
Different on purpose or by nature:
  * conv models take NCHW input, torch's native layout (Keras runs NHWC): Flatten therefore
    orders LeNet's 256 features differently (a fixed permutation, same count).
  * Keras "same" padding with stride 2 pads (0, 1) on even sizes; torch's padding=1 pads (1, 1):
    same output sizes, shifted by one pixel.
  * the MLPs end in logits and use ``F.cross_entropy`` (softmax + cross-entropy, fused). LeNet
    keeps the seed's sigmoid output and Keras's loss exactly: the ten sigmoids normalized to sum
    to 1, clipped to [1e-7, 1 − 1e-7], then −log p[label]. The deep CNN: BCE with logits on
    one-hot labels, as bnlab does.
  * RMSprop and Adam with Keras's defaults (rho 0.9, eps 1e-7; torch adds eps outside the square
    root, Keras inside: same cost).
  * Keras's ``fit`` also updates an accuracy metric every step; this loop does not.

    python bench/torch_models.py --check [--json]   # parameter counts and multiply-adds vs Keras
"""

import functools
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import emit, log

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "sigmoid": nn.Sigmoid}


def _init(layer, he=False):
    """Keras's initializers: glorot_uniform kernels, or he_normal (a normal truncated at ±2 std,
    std √(2/fan_in) / 0.8796), and zero biases."""
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
    bn1 = functools.partial(nn.BatchNorm1d, eps=epsilon, momentum=1.0 - momentum)
    bn2 = functools.partial(nn.BatchNorm2d, eps=epsilon, momentum=1.0 - momentum)
    use_bn = norm != "none"
    layers = []
    if name == "mlp":
        layers.append(nn.Flatten())
        if not use_bn:  # seed 004's baseline
            for fan_in, units in ((784, 300), (300, 100)):
                layers += [_init(nn.Linear(fan_in, units), he=True),
                           nn.LeakyReLU(0.3) if activation is None else ACTIVATIONS[activation]()]
        else:
            layers.append(bn1(784))
            for fan_in, units in ((784, 300), (300, 100)):
                layers += _block(fan_in, units, bn1, placement, activation or "relu", bias=False)
        layers.append(_init(nn.Linear(100, 10)))
    elif name == "deep-mlp":
        layers.append(nn.Flatten())
        for fan_in in [784] + [100] * 19:
            if use_bn:
                layers += _block(fan_in, 100, bn1, placement, activation or "relu", bias=True)
            else:
                layers += [_init(nn.Linear(fan_in, 100)), ACTIVATIONS[activation or "relu"]()]
        layers.append(_init(nn.Linear(100, 10)))
    elif name == "lenet":
        act = ACTIVATIONS[activation or "sigmoid"]
        for cin, cout in ((1, 6), (6, 16)):
            layers.append(_init(nn.Conv2d(cin, cout, 5)))
            layers += [bn2(cout)] if use_bn else []
            layers += [act(), nn.MaxPool2d(2, 2)]
        layers.append(nn.Flatten())
        for fan_in, units in ((256, 120), (120, 84)):
            layers.append(_init(nn.Linear(fan_in, units)))
            layers += [bn1(units)] if use_bn else []
            layers.append(act())
        layers += [_init(nn.Linear(84, 10)), nn.Sigmoid()]
    elif name == "deep-cnn":
        act = ACTIVATIONS[activation or "relu"]
        cin = 1
        for i in range(1, 20):
            layers.append(_init(nn.Conv2d(cin, 4 * i, 3, stride=2 if i % 3 == 0 else 1, padding=1,
                                          bias=not use_bn)))
            layers += [bn2(4 * i)] if use_bn else []
            layers.append(act())
            cin = 4 * i
        # 1×1×76 after 6 strides
        layers += [nn.Flatten(), _init(nn.Linear(cin, 100, bias=not use_bn))]
        layers += [bn1(100)] if use_bn else []
        layers += [act(), _init(nn.Linear(100, 10))]
    elif name == "study-cnn":  # bnlab.models' study CNN; the norm's options are BN's here
        cin = 1
        for i, cout in enumerate((16, 32, 64)):
            layers += [nn.MaxPool2d(2, 2)] if i else []
            layers.append(_init(nn.Conv2d(cin, cout, 3, padding=1, bias=not use_bn)))
            layers += [bn2(cout)] if use_bn else []
            layers.append(ACTIVATIONS[activation or "relu"]())
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), _init(nn.Linear(64, 10))]
    else:
        raise ValueError(f"unknown model {name!r}")
    return nn.Sequential(*layers)


def _block(fan_in, units, bn, placement, activation, bias):
    if placement == "after":
        return [_init(nn.Linear(fan_in, units)), ACTIVATIONS[activation](), bn(units)]
    return [_init(nn.Linear(fan_in, units, bias=bias)), bn(units), ACTIVATIONS[activation]()]


def loss_function(name):
    """loss(output, target) with Keras's semantic for ``name`` (see the module docstring)."""
    if name in ("mlp", "deep-mlp", "study-cnn"):
        return F.cross_entropy
    if name == "lenet":
        def normalized_sigmoid_ce(p, y):
            p = p / p.sum(dim=1, keepdim=True)
            return F.nll_loss(torch.log(p.clamp(1e-7, 1.0 - 1e-7)), y)
        return normalized_sigmoid_ce
    return F.binary_cross_entropy_with_logits  # deep-cnn: one-hot float targets


def optimizer(params, spec):
    lr = spec["learning_rate"]
    if spec["name"] == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=spec.get("momentum", 0.0))
    if spec["name"] == "RMSprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7)
    if spec["name"] == "Adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-7)
    raise ValueError(f"no torch optimizer for {spec['name']}")


def train_block(config, x, y):
    """A block of training steps of the twin of ``config``'s model over bnlab's training arrays
    ``x``, ``y`` in the config's batches: images NHWC → NCHW; integer class labels → int64,
    one-hot rows (the deep CNN's) → float32."""
    torch.manual_seed(config["seed"])
    spec = dict(config["model"])
    name = spec.pop("name")
    model = build(name, **spec).train()
    opt, loss_fn = optimizer(model.parameters(), config["optimizer"]), loss_function(name)
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


# ----------------------------------------------------------------------------------------------
# the check: parameter counts and multiply-adds against Keras's


def forward_macs_by_hooks(model, shape):
    """Multiply-accumulates of the forward pass of one example of ``shape``, read from the
    modules' shapes."""
    macs = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Linear):
            macs.append(module.in_features * module.out_features)
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs.append(output.shape[2] * output.shape[3] * k * module.in_channels
                        * module.out_channels)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.zeros((2, *shape)))
    for h in handles:
        h.remove()
    return sum(macs)


def check():
    """Rows (experiment, arm, Keras's counts, the twin's, its multiply-adds, ok) for every arm and
    the norm="scratch" twins of the MLP arms with Keras's BN (the scratch-vs-keras section); the
    multiply-adds bnlab counts (``bnlab.lab.estimate``) are held against the modules' shapes."""
    import keras  # noqa: F401  (the backend is whatever the environment chose: counts agree)

    from bnlab import models
    from bnlab.lab import estimate
    from bnlab.lab.experiments import EXPERIMENTS

    variants = []
    for exp in EXPERIMENTS.values():
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
        macs = forward_macs_by_hooks(twin, (1, 28, 28) if name in models.CONVOLUTIONAL
                                     else (28, 28))
        ok = counts["keras"] == counts["torch"] and macs == estimate.multiply_adds(keras_model)
        rows.append({"experiment": experiment, "arm": arm, **counts, "macs": macs, "ok": ok})
    return rows


def main(argv):
    if "--check" not in argv:
        print(__doc__)
        return 2
    torch.set_num_threads(2)
    rows = check()
    for r in rows:
        log(f"{r['experiment']:>12} {r['arm']:<22} keras {r['keras']} torch {r['torch']} "
            f"fwd MACs {r['macs']:,}  {'ok' if r['ok'] else 'MISMATCH'}")
    bad = [r for r in rows if not r["ok"]]
    if "--json" in argv:  # bench/run.py: the table goes into the report, mismatches marked
        emit({"rows": rows, "ok": not bad})
        return 0
    assert not bad, f"disagree with Keras: {[(r['experiment'], r['arm']) for r in bad]}"
    print(f"all {len(rows)} torch twins agree with Keras: parameter counts and forward MACs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
