"""fine-tuning-bn: what to do with BN when fine-tuning (keras#9214, keras#20285,
pytorch/vision#5443; Keras's transfer-learning guide).

The study CNN is pretrained once per seed on Fashion-MNIST's classes 0-4 (``bnlab.lab.pretrain``:
1 epoch, batch 32, cached), then fine-tuned on the first 500 training images of classes 5-9
(a new head) under the BN policies people argue about:

    train-mode   BN in training mode: batch statistics, moving ones updated, all trained
    frozen       FrozenBN = Keras's ``trainable=False``: source statistics and γ, β fixed
    moving       source statistics fixed, γ, β trained (PyTorch's ``bn.eval()``)
    bn-head      only γ, β and the head trained, BN in training mode
    restats      FrozenBN after PreciseBN re-estimates the statistics on the target images

at a small fine-tuning batch (4) and, for train-mode and frozen, at 32 (the learning rate
scaled with the batch, as many images at both). Every arm of a seed starts from the same
pretrained weights and the same fresh head, and sees the same batches at its batch size.
"""

from bnlab.lab.spec import Arm, Claim, Experiment

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
PRETRAIN = {"classes": list(SOURCE_CLASSES), "epochs": 1, "batch_size": 32,
            "optimizer": {"name": "SGD", "learning_rate": 0.02, "momentum": 0.9}}
SMALL, LARGE = 4, 32
POLICIES = (
    ("train-mode", "BN in training mode", {}),
    ("frozen", "FrozenBN (Keras trainable=False)", {"bn_mode": "frozen"}),
    ("moving", "source statistics, γ β trained (PyTorch eval())", {"bn_mode": "moving"}),
    ("bn-head", "only γ, β and the head", {"train": "norm+head"}),
    ("restats", "PreciseBN on the target, then FrozenBN", {"bn_mode": "frozen"}),
)


def _arm(policy, label, features, batch):
    init = {**PRETRAIN, "restatistics": policy == "restats"}
    return Arm(f"{policy}-b{batch}", f"{label}, batch {batch}",
               {"norm": "scratch", **features, "pretrained": init}, batch_size=batch, group=policy,
               x=batch)


STUDY = Experiment(
    name="fine-tuning-bn",
    title="BN policies for fine-tuning with few labels (Keras guide; keras#9214)",
    seed_source="study",
    description=(
        "The study CNN pretrained on classes 0-4 of Fashion-MNIST (1 epoch, batch 32, SGD "
        "momentum 0.9 at 0.02, once per seed), then fine-tuned with a new head on the first 500 "
        "training images of classes 5-9, SGD momentum 0.9 at 0.01 · B/32, as many images at "
        "every batch size B; test accuracy on the test images of classes 5-9."
    ),
    dataset="fashion_mnist",
    model="study-cnn",
    arms=tuple(_arm(*p, SMALL) for p in POLICIES)
    + tuple(_arm(*p, LARGE) for p in POLICIES[:2]),
    optimizer={"name": "SGD", "learning_rate": 0.01, "momentum": 0.9},
    batch_size=LARGE,
    split={"validation": 2000, "classes": list(TARGET_CLASSES), "train": 500},
    preprocessing="scale",
    steps=160,  # at batch 32: about 10 passes over the 500 images
    comparisons=(
        {"a": "frozen-b4", "b": "train-mode-b4", "question": "frozen vs training-mode BN, b4"},
        {"a": "restats-b4", "b": "frozen-b4", "question": "target vs source statistics"},
        {"a": "frozen-b32", "b": "train-mode-b32", "question": "frozen vs training-mode BN, b32"},
    ),
    log_every={"batch": 40, "validation": 80},
    claims=(
        Claim("Frozen (inference-mode) BN beats training-mode BN at a small fine-tuning batch",
              a="frozen-b4", b="train-mode-b4", direction="greater",
              paper="the guides: set trainable=False on BN when fine-tuning (keras#9214)"),
        Claim("BN on its source statistics with γ, β trained (PyTorch eval()) beats training "
              "mode at a small batch", a="moving-b4", b="train-mode-b4", direction="greater",
              paper="pytorch/vision#5443: keep BN in eval mode at small batches"),
        Claim("Re-estimating the statistics on the target data helps (classes 5-9 differ from "
              "0-4)", a="restats-b4", b="frozen-b4", direction="greater",
              paper="re-estimate BN statistics when the domains differ"),
        Claim("Frozen BN's advantage over training mode is larger at batch 4 than at 32",
              a=("frozen-b4", "train-mode-b4"), b=("frozen-b32", "train-mode-b32"),
              direction="greater", paper="batch statistics hurt most at small batches"),
    ),
    seeds=5,
    quick={"steps": 16, "limit": 1000, "seeds": 2,
           "arms": ["frozen-b4", "train-mode-b4", "restats-b4", "frozen-b32", "train-mode-b32"]},
)
