"""The bench's goals, all in one place: what each compares, its limit, where its ratios are read.

Met where each ratio (median over the rounds) is ≤ ``limit``: in ``section``, each row's first
side ÷ ``over`` (or each other), of ``experiments`` where given; else report.measured, by key.
"""

GOALS = (
    {"key": "bn-free", "section": "bn-cost", "limit": 1.10,
     "text": "BN for free: each BN arm's step ≤ 1.10 × the baseline arm's (bn-placement, bnlab, "
             "one seed and 3 seeds together)"},
    {"key": "products", "section": "breakdown", "limit": 1.5,
     "text": "the baseline step ≤ 1.5 × its matrix products at the host's BLAS rate"},
    {"key": "bn-copy", "section": "bn", "limit": 2.0,
     "text": "BN forward + backward alone ≥ 50 % of the copy rate for the bytes it must move "
             "(time ≤ 2 × the copy's), dense and conv shape, JAX"},
    {"key": "peers", "section": "peers", "limit": 0.8,
     "text": "bnlab ≤ 0.8 × the faster of Keras on JAX and PyTorch, every arm"},
    {"key": "tensorflow", "section": "tensorflow", "limit": 1.0, "over": "keras-tf",
     "text": "bnlab ≤ 1.0 × Keras on TensorFlow (the seeds' stack), every arm"},
    {"key": "scratch", "section": "scratch", "limit": 1.05, "over": "bnlab:norm=keras",
     "text": "a step with norm=\"scratch\" ≤ 1.05 × norm=\"keras\""},
    {"key": "variants", "section": "variants", "limit": 1.10,
     "text": "norm=\"renorm\" ≤ 1.10 × Keras's renorm=True layer; norm=\"ghost\" ≤ 1.10 × "
             "norm=\"scratch\""},
    {"key": "seeds", "section": "seeds", "limit": 2.0, "over": "bnlab",
     "experiments": ("bn-placement", "deep-mlp"),
     "text": "5 seeds of an MLP together ≤ 2 × one seed"},
    {"key": "conv-seeds", "section": "seeds", "limit": 2.5, "over": "bnlab",
     "experiments": ("lenet-bn",), "text": "5 LeNet seeds together ≤ 2.5 × one seed"},
    {"key": "study", "section": "study", "limit": 0.5, "over": "torch",
     "text": "the batch-size study's CNN at batch 2 and 8: bnlab ≤ 0.5 × PyTorch"},
)
