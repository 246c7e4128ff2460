"""FLOPs of the seed models, counted from their layer shapes, and this CPU's FP32 peak.

Counting (per training example):
  * forward: 2 × multiply-accumulates of every Dense (in × out) and Conv2D
    (H_out × W_out × k² × C_in × C_out) layer. Biases, BN, activations, pooling, the loss and
    the optimizer update are elementwise (a few FLOPs per value, memory-bound): NOT counted.
  * training step ≈ 3 × forward: the backward pass computes the gradient w.r.t. the input and
    the one w.r.t. the weights, each as many MACs as the forward product.
  The counts do not depend on the arm (BN or not, before or after). ``torch_models.py --check``
  holds them against the built modules' shapes.

Peak (the measured rates are ``common.host_rates``, the host's BLAS):
  * theoretical: cores × clock × FP32 FLOP/cycle/core, where FLOP/cycle = FMA pipes × lanes × 2
    (an FMA is 2 FLOPs), lanes = vector datapath width / 32 bits, read from /proc/cpuinfo:
    AMD family 0x19 (Zen 3/Zen 4): 2 FMA pipes, 256-bit datapath (Zen 4 runs AVX-512 as two
    256-bit halves) → 32; family 0x1A (Zen 5): 2 FMA pipes × 512-bit → 64; other CPUs with
    AVX-512: 2 × 16 × 2 = 64; AVX2+FMA: 2 × 8 × 2 = 32. The clock is the nominal one ("cpu MHz",
    else the TSC's = BogoMIPS / 2): a virtual machine does not show the boost clock, so the true
    peak can be higher — the measured matrix-product rate is the reference the goals use.

    python bench/flops.py [--peak]    # the counts; --peak: the theoretical peak as JSON
"""

import os
import sys

from common import cpuinfo, emit

EPOCH_EXAMPLES = 55000  # Fashion-MNIST training split of the epoch experiments (60000 − 5000 val)


def forward_macs(name):
    """Multiply-accumulates of one example's forward pass through model ``name``."""
    if name == "mlp":
        return 784 * 300 + 300 * 100 + 100 * 10
    if name == "deep-mlp":
        return 784 * 100 + 19 * 100 * 100 + 100 * 10
    if name == "lenet":  # valid 5×5 convs: 28 → 24 → pool 12 → 8 → pool 4
        return 24 * 24 * 25 * 1 * 6 + 8 * 8 * 25 * 6 * 16 + 256 * 120 + 120 * 84 + 84 * 10
    if name == "deep-cnn":  # "same" 3×3 convs, stride 2 (size → ceil(size / 2)) every third
        size, cin, macs = 28, 1, 0
        for i in range(1, 20):
            if i % 3 == 0:
                size = -(-size // 2)
            macs += size * size * 9 * cin * 4 * i
            cin = 4 * i
        return macs + size * size * cin * 100 + 100 * 10
    raise ValueError(f"unknown model {name!r}")


def train_flops(name):
    """FLOPs of one training example: 3 × 2 × forward MACs."""
    return 3 * 2 * forward_macs(name)


def theoretical_peak():
    """{"gflops", "derivation", ...}: cores × GHz × FLOP/cycle/core, from /proc/cpuinfo."""
    info = cpuinfo()
    flags = set(info.get("flags", "").split())
    family = int(info.get("cpu family", "0") or 0)
    vendor = info.get("vendor_id", "")
    if "cpu MHz" in info:
        ghz, clock = float(info["cpu MHz"]) / 1000, "cpu MHz"
    else:
        ghz, clock = float(info.get("bogomips", "0")) / 2000, "TSC clock = BogoMIPS / 2"
    if vendor == "AuthenticAMD" and family == 0x19:
        pipes, bits, why = 2, 256, "AMD family 0x19 (Zen 3/4): 2 FMA pipes, 256-bit datapath"
    elif vendor == "AuthenticAMD" and family >= 0x1A:
        pipes, bits, why = 2, 512, "AMD family 0x1A (Zen 5): 2 FMA pipes, 512-bit datapath"
    elif "avx512f" in flags:
        pipes, bits, why = 2, 512, "AVX-512: 2 FMA pipes × 512-bit"
    elif "fma" in flags:
        pipes, bits, why = 2, 256, "AVX2+FMA: 2 FMA pipes × 256-bit"
    else:
        pipes, bits, why = 1, 128, "SSE: 1 pipe × 128-bit (no FMA counted as 2)"
    per_cycle = pipes * (bits // 32) * 2
    cores = os.cpu_count()
    gflops = cores * ghz * per_cycle
    derivation = (f"{cores} cores × {ghz:.3f} GHz ({clock}) × {per_cycle} FLOP/cycle "
                  f"({why}: {pipes} × {bits // 32} float32 lanes × 2 for the FMA) "
                  f"= {gflops:.0f} GFLOP/s")
    return {"gflops": gflops, "cores": cores, "ghz": ghz, "flop_per_cycle": per_cycle,
            "derivation": derivation}


def main(argv):
    if "--peak" not in argv:
        print(__doc__)
        for name in ("mlp", "deep-mlp", "lenet", "deep-cnn"):
            print(f"{name:>9}: {forward_macs(name):>10,} MACs forward, "
                  f"{train_flops(name) / 1e6:.2f} MFLOP per training example")
        print(theoretical_peak()["derivation"])
        return 0
    emit({"theoretical": theoretical_peak()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
