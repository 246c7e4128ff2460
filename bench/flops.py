"""This CPU's theoretical FP32 peak, from /proc/cpuinfo (the FLOPs of the models are counted by
``bnlab.lab.estimate.multiply_adds``; ``torch_models.py --check`` holds them against the modules).

Peak (the measured rates are ``common.host_rates``, the host's BLAS):
  * theoretical: cores × clock × FP32 FLOP/cycle/core, where FLOP/cycle = FMA pipes × lanes × 2
    (an FMA is 2 FLOPs), lanes = vector datapath width / 32 bits, read from /proc/cpuinfo:
    AMD family 0x19 (Zen 3/Zen 4): 2 FMA pipes, 256-bit datapath (Zen 4 runs AVX-512 as two
    256-bit halves) → 32; family 0x1A (Zen 5): 2 FMA pipes × 512-bit → 64; other CPUs with
    AVX-512: 2 × 16 × 2 = 64; AVX2+FMA: 2 × 8 × 2 = 32. The clock is the nominal one ("cpu MHz",
    else the TSC's = BogoMIPS / 2): a virtual machine does not show the boost clock, so the true
    peak can be higher — the measured matrix-product rate is the reference the goals use.

    python bench/flops.py [--peak]    # the derivation; --peak: as JSON
"""

import os
import sys

from common import cpuinfo, emit


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
    emit({"theoretical": theoretical_peak()}) if "--peak" in argv else print(
        theoretical_peak()["derivation"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
