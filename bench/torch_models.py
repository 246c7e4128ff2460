"""Plain PyTorch (``torch.nn``) versions of bnlab's seed models and their training loop.

The benchmark's third column: the same model, batch size, optimizer and data as bnlab's arm,
written the way a PyTorch user would write it (eager mode, ``torch.nn`` layers, a hand loop).

Same as Keras (bnlab.models): layer sizes, which layers have a bias, BN placement, activations,
initializers (glorot_uniform kernels, zero biases, he_normal = truncated normal std
√(2/fan_in)/0.8796 for the MLP baseline), BN with ``momentum = 1 − keras_momentum`` and the same
epsilon, LeakyReLU slope 0.3, and the parameter counts (checked by ``--check``; torch's
``num_batches_tracked`` counter is not a parameter and is not counted).
Different on purpose or by nature:
  * conv models take NCHW input (N, 1, 28, 28): torch's native layout; Keras runs NHWC. Flatten
    therefore orders LeNet's 256 features differently (a fixed permutation, same count).
  * Keras "same" padding with stride 2 pads (0, 1) on even sizes; torch's padding=1 pads (1, 1):
    same output sizes, shifted by one pixel.
  * MLP / deep MLP end in logits and use ``F.cross_entropy`` (softmax + sparse categorical
    cross-entropy, as Keras computes it, fused). LeNet keeps the seed's sigmoid output and Keras's
    loss semantic exactly: the ten sigmoids are normalized to sum to 1, clipped to
    [1e-7, 1 − 1e-7], then −log p[label]. The deep CNN uses BCE-with-logits on one-hot labels,
    as bnlab does.
  * RMSprop: Keras's defaults (rho 0.9, eps 1e-7) set on torch (alpha=0.9, eps=1e-7; torch adds
    eps outside the square root, Keras inside: same cost). Adam: eps=1e-7 as Keras.
  * Keras's ``fit`` also updates an accuracy metric every step; this loop does not.

    python bench/torch_models.py --check [--json]   # parameter counts vs Keras, FLOPs vs hooks
"""

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import emit, log

CONV_MODELS = ("lenet", "deep-cnn")
ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "sigmoid": nn.Sigmoid}


def _dense(fan_in, units, bias=True, init="glorot"):
    layer = nn.Linear(fan_in, units, bias=bias)
    if init == "he":  # Keras he_normal: truncated normal (±2 std) with std √(2/fan_in) / 0.8796
        std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
        nn.init.trunc_normal_(layer.weight, 0.0, std, -2 * std, 2 * std)
    else:
        nn.init.xavier_uniform_(layer.weight)  # = Keras glorot_uniform
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def _conv(cin, cout, k, stride=1, padding=0, bias=True):
    layer = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def build(name, *, norm="keras", placement="after", activation=None, momentum=0.99, epsilon=1e-3):
    """The torch twin of ``bnlab.models.build(name, ...)`` (``norm="scratch"`` = torch's BN too)."""
    def bn1(c):
        return nn.BatchNorm1d(c, eps=epsilon, momentum=1.0 - momentum)

    def bn2(c):
        return nn.BatchNorm2d(c, eps=epsilon, momentum=1.0 - momentum)

    use_bn = norm != "none"
    layers = []
    if name == "mlp":
        layers.append(nn.Flatten())
        if not use_bn:  # seed 004's baseline
            for fan_in, units in ((784, 300), (300, 100)):
                layers += [_dense(fan_in, units, init="he"),
                           nn.LeakyReLU(0.3) if activation is None else ACTIVATIONS[activation]()]
        else:
            layers.append(bn1(784))
            for fan_in, units in ((784, 300), (300, 100)):
                layers += _block(fan_in, units, bn1, placement, activation or "relu", bias=False)
        layers.append(_dense(100, 10))
    elif name == "deep-mlp":
        layers.append(nn.Flatten())
        fan_in = 784
        for _ in range(20):
            if use_bn:
                layers += _block(fan_in, 100, bn1, placement, activation or "relu", bias=True)
            else:
                layers += [_dense(fan_in, 100), ACTIVATIONS[activation or "relu"]()]
            fan_in = 100
        layers.append(_dense(100, 10))
    elif name == "lenet":
        act = ACTIVATIONS[activation or "sigmoid"]
        for cin, cout in ((1, 6), (6, 16)):
            layers.append(_conv(cin, cout, 5))
            layers += [bn2(cout)] if use_bn else []
            layers += [act(), nn.MaxPool2d(2, 2)]
        layers.append(nn.Flatten())
        for fan_in, units in ((256, 120), (120, 84)):
            layers.append(_dense(fan_in, units))
            layers += [bn1(units)] if use_bn else []
            layers.append(act())
        layers += [_dense(84, 10), nn.Sigmoid()]
    elif name == "deep-cnn":
        act = ACTIVATIONS[activation or "relu"]
        cin = 1
        for i in range(1, 20):
            layers.append(_conv(cin, 4 * i, 3, stride=2 if i % 3 == 0 else 1, padding=1,
                                bias=not use_bn))
            layers += [bn2(4 * i)] if use_bn else []
            layers.append(act())
            cin = 4 * i
        layers += [nn.Flatten(), _dense(cin, 100, bias=not use_bn)]  # 1×1×76 after 6 strides
        layers += [bn1(100)] if use_bn else []
        layers += [act(), _dense(100, 10)]
    elif name == "study-cnn":  # bnlab.models' study CNN; the norm's options are BN's here
        cin = 1
        for i, cout in enumerate((16, 32, 64)):
            layers += [nn.MaxPool2d(2, 2)] if i else []
            layers.append(_conv(cin, cout, 3, padding=1, bias=not use_bn))
            layers += [bn2(cout)] if use_bn else []
            layers.append(ACTIVATIONS[activation or "relu"]())
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), _dense(64, 10)]
    else:
        raise ValueError(f"unknown model {name!r}")
    return nn.Sequential(*layers)


def _block(fan_in, units, bn, placement, activation, bias):
    if placement == "after":
        return [_dense(fan_in, units), ACTIVATIONS[activation](), bn(units)]
    return [_dense(fan_in, units, bias=bias), bn(units), ACTIVATIONS[activation]()]


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


def twin(config):
    """The PyTorch twin of a bnlab trial config's model, with its optimizer and loss function."""
    spec = dict(config["model"])
    name = spec.pop("name")
    model = build(name, **spec)
    return model, optimizer(model.parameters(), config["optimizer"]), loss_function(name)


def tensors(x, y):
    """bnlab's training arrays as torch tensors: NHWC images → NCHW, float32; integer class
    labels → int64, one-hot rows (the deep CNN's) → float32."""
    x, y = np.asarray(x), np.asarray(y)
    x = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x
    return (torch.from_numpy(np.ascontiguousarray(x, dtype="float32")),
            torch.from_numpy(y.astype("int64" if y.ndim == 1 else "float32")))


def count_params(model):
    """(total, trainable, non-trainable) as Keras counts them: BN running mean/var are
    non-trainable weights; ``num_batches_tracked`` is torch bookkeeping, not a weight."""
    trainable = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for n, b in model.named_buffers()
                  if not n.endswith("num_batches_tracked"))
    return trainable + buffers, trainable, buffers


# ----------------------------------------------------------------------------------------------
# training


def _step(model, opt, loss_fn, xb, yb):
    opt.zero_grad(set_to_none=True)
    loss_fn(model(xb), yb).backward()
    opt.step()


def forward_macs_by_hooks(model, name):
    """Multiply-accumulates of one example's forward pass, read from the modules' shapes."""
    macs = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Linear):
            macs.append(module.in_features * module.out_features)
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs.append(output.shape[2] * output.shape[3] * k * module.in_channels
                        * module.out_channels)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    shape = (2, 1, 28, 28) if name in CONV_MODELS else (2, 28, 28)
    with torch.no_grad():
        model.eval()(torch.zeros(shape))
    for h in handles:
        h.remove()
    return sum(macs)


def check(variants):
    """Rows (experiment, arm, keras counts, torch counts, ok) for every arm and scratch variant;
    the multiply-adds bnlab counts (``bnlab.lab.estimate``) are held against the modules' shapes."""
    import keras  # noqa: F401  (the backend is whatever the environment chose: counts agree)

    from bnlab import models
    from bnlab.lab import estimate

    rows = []
    for experiment, arm, spec in variants:
        spec = dict(spec)
        name = spec.pop("name")
        keras_model = models.build(name, **spec)
        keras_counts = tuple(int(c) for c in models.count_params(keras_model))
        tmodel = build(name, **spec)
        torch_counts = count_params(tmodel)
        macs = forward_macs_by_hooks(tmodel, name)
        ok = keras_counts == torch_counts and macs == estimate.multiply_adds(keras_model)
        rows.append({"experiment": experiment, "arm": arm, "keras": keras_counts,
                     "torch": torch_counts, "macs": macs, "ok": ok})
    return rows


def all_variants():
    """(experiment, arm label, model spec) for every arm, plus the norm="scratch" twins of the
    MLP arms that use Keras's BN (the benchmark's scratch-vs-keras comparison)."""
    from bnlab.lab.experiments import EXPERIMENTS

    out = []
    for exp in EXPERIMENTS.values():
        for arm in exp.arms:
            # of the studies, only the arms the bench times against PyTorch have twins
            if exp.seed_source == "study" and not (exp.model == "study-cnn"
                                                   and arm.model.get("norm") == "keras"):
                continue
            spec = {"name": exp.model, **arm.model}
            out.append((exp.name, arm.name, spec))
            if spec.get("norm") == "keras" and exp.model in ("mlp", "deep-mlp"):
                out.append((exp.name, arm.name + "[scratch]", {**spec, "norm": "scratch"}))
    return out


def main(argv):
    if "--check" not in argv:
        print(__doc__)
        return 2
    torch.set_num_threads(2)
    rows = check(all_variants())
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
