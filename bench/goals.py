"""The bench's goals, all in one place: what each compares, its limit, and the section that measures it.

Each goal is a ratio of two times measured side by side in one run; it is met where the ratio is
at most ``limit`` (the median over the rounds; report.py also says whether every round agrees).
``report.py`` finds the ratios in its section's results by the goal's ``key``.
"""

GOALS = tuple(dict(zip(("key", "section", "limit", "text"), goal)) for goal in (
    ("bn-free", "bn-cost", 1.10,
     "BN for free: each BN arm's step ≤ 1.10 × the baseline arm's (bn-placement, bnlab, "
     "one seed and 3 seeds together)"),
    ("products", "breakdown", 1.5,
     "the baseline step ≤ 1.5 × its matrix products at the host's BLAS rate"),
    ("bn-copy", "bn", 2.0,
     "BN forward + backward alone ≥ 50 % of the copy rate for the bytes it must move "
     "(time ≤ 2 × the copy's), dense and conv shape, JAX"),
    ("peers", "peers", 0.8,
     "bnlab ≤ 0.8 × the faster of Keras on JAX and PyTorch, every arm"),
    ("tensorflow", "tensorflow", 1.0,
     "bnlab ≤ 1.0 × Keras on TensorFlow (the seeds' stack), every arm"),
    ("scratch", "scratch", 1.05,
     "a step with norm=\"scratch\" ≤ 1.05 × norm=\"keras\""),
    ("variants", "variants", 1.10,
     "norm=\"renorm\" ≤ 1.10 × Keras's renorm=True layer; norm=\"ghost\" ≤ 1.10 × "
     "norm=\"scratch\""),
    ("seeds", "seeds", 2.0,
     "5 seeds of an MLP together ≤ 2 × one seed"),
    ("conv-seeds", "seeds", 2.5,
     "5 LeNet seeds together ≤ 2.5 × one seed"),
    ("study", "study", 0.5,
     "the batch-size study's CNN at batch 2 and 8: bnlab ≤ 0.5 × PyTorch"),
))
