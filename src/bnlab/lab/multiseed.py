"""K seeds of one arm trained together as one vectorized JAX program (the JAX backend's path).

The Keras model is used through its stateless API. A seed's state is three lists of arrays:
trainable weights, non-trainable weights (BN's moving statistics) and optimizer variables. One
training step for one seed is::

    (loss, (ŷ, non_trainable')), grads = value_and_grad(loss)(trainable, non_trainable, x, y)
    trainable', optimizer' = optimizer.stateless_apply(optimizer, grads, trainable)

``jax.vmap`` maps that step over a leading seed axis of length K, each seed on its own batch (its
own ``recipe.epoch_order``), and ``jax.lax.scan`` runs all the steps of an epoch inside one
compiled call, so no Python runs between steps and the K small matrix products of a step become
one batched product. A seed's initial weights and batches are those of a separate run
(``recipe.compile_model`` and ``recipe.epoch_order``), so its history is the separate run's up to
float round-off. With K = 1 it runs about as fast as Keras's ``fit`` (bench/tried.md).

Reported metrics follow Keras's ``fit``: the training loss and accuracy of an epoch are averages
over its examples, taken while training; validation and test metrics are computed in inference
mode after the epoch.
"""

import jax
import jax.numpy as jnp
import keras
import numpy as np

from bnlab import models
from bnlab.lab import folded_input, loop, recipe
from bnlab.seeding import set_seed
from bnlab.tools import precise
from bnlab.tools import probe as probe_tools

# Models ``bnlab run`` trains together by default: those for which it is faster than K fit runs.
# Any model and norm can be trained together (``--path together``; the tests hold every norm, the
# conv models included, against fit). Of the conv models the batch-size study's small CNN gains at
# its small batches, and LeNet since its BN layers train by the C++ kernels: one seed 0.57-0.63 ×
# fit's step, every norm at most fit's (bench/tried.md, "LeNet's trials"). The deep CNN's
# unrolled program would compile for minutes: it stays on fit.
VECTORIZED_MODELS = ("mlp", "deep-mlp", "sigmoid-mlp", "lenet", "study-cnn", "relu-mlp",
                     "dropout-mlp")

# Conv models' seed-steps per compiled call (``SeedGroup._unrolled``): UNROLL // K steps of the K
# seeds, written out one after the other, so no while loop slows the convolutions and Python is
# called once per call, not once a step. One seed gains 12-25% at batches 2-8, but the unrolled
# program compiles for about 2 s longer, which the faster steps pay back only after about 40,000
# steps (bench/tried.md): trials of fewer steps (UNROLL_FROM) take one step a call.
UNROLL = 8
UNROLL_FROM = 40_000


def supported(config):
    """Whether ``bnlab run`` trains ``config``'s seeds together by default (VECTORIZED_MODELS, on
    JAX)."""
    return keras.backend.backend() == "jax" and config["model"]["name"] in VECTORIZED_MODELS


class SeedGroup:
    """The K trials of one arm (configs differing only in their seed), trained as one program."""

    def __init__(self, configs):
        seeds = [c["seed"] for c in configs]
        others = [{k: v for k, v in c.items() if k != "seed"} for c in configs]
        if any(o != others[0] for o in others) or len(set(seeds)) != len(seeds):
            raise ValueError("a seed group needs configs that differ only in distinct seeds")
        self.configs, self.k = configs, len(configs)
        built = []
        for config in configs:
            set_seed(config["seed"])
            model = recipe.compile_model(config)
            model.optimizer.build(model.trainable_variables)
            built.append(model)
        self.model, self.optimizer = built[0], built[0].optimizer
        self.params = models.count_params(self.model)
        self.loss_fn, _ = recipe.loss_and_metric(configs[0])
        self.convolutional = configs[0]["model"]["name"] in models.CONVOLUTIONAL
        # the input BN's γ, β cheaper; BN by the C++ kernels where they were measured faster
        self._training_call = folded_input.training_call(
            self.model, native_bn=self.k > 1 or self.convolutional)
        self.one_hot = recipe.one_hot_labels(configs[0])

        def stacked(variables_of):
            return [jnp.stack(values) for values in
                    zip(*[[v.value for v in variables_of(m)] for m in built])]

        self.state = (stacked(lambda m: m.trainable_variables),
                      stacked(lambda m: m.non_trainable_variables),
                      stacked(lambda m: m.optimizer.variables))
        step = self._each_seed(self._step)
        self._train_step = jax.jit(step, donate_argnums=0)
        if self.convolutional:
            one = self._gathered(step)
            long_trial = recipe.optimizer_steps(configs[0]) >= UNROLL_FROM
            # K seeds side by side already fill a call
            self.unroll = max(1, UNROLL // self.k) if long_trial else 1
            self._train_steps = self._loop(
                jax.jit(one, donate_argnums=0),
                jax.jit(self._unrolled(one, self.unroll), donate_argnums=0), self.unroll)
        else:
            self.unroll = 1  # a scan
            self._train_steps = jax.jit(self._scan(step), donate_argnums=0)
        self._eval_shared = jax.jit(jax.vmap(self._eval, in_axes=(0, 0, None, None)))
        self._eval_own = jax.jit(jax.vmap(self._eval))
        self._predict = jax.jit(jax.vmap(self._infer, in_axes=(0, 0, None)))
        self.step, self.probes = 0, None  # training steps so far; activation probes if attached

    # -- the math of one seed -------------------------------------------------------------------
    def _step(self, state, x, y):
        trainable, non_trainable, optimizer_variables = state

        def loss(trainable):
            y_pred, new_non_trainable = self._training_call(trainable, non_trainable, x)
            return self.loss_fn(y, y_pred), (y_pred, new_non_trainable)

        (value, (y_pred, non_trainable)), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
        trainable, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, grads, trainable)
        return (trainable, non_trainable, optimizer_variables), (
            value * x.shape[0], self._correct(y, y_pred))

    def _infer(self, trainable, non_trainable, x):
        return self.model.stateless_call(trainable, non_trainable, x, training=False)[0]

    def _eval(self, trainable, non_trainable, x, y):
        y_pred = self._infer(trainable, non_trainable, x)
        return self.loss_fn(y, y_pred) * x.shape[0], self._correct(y, y_pred)

    def _correct(self, y, y_pred):
        truth = jnp.argmax(y, axis=-1) if self.one_hot else y
        return jnp.sum(jnp.argmax(y_pred, axis=-1) == truth)

    # -- how the K seeds and the S steps are put together ------------------------------------------
    # Dense models: ``jax.vmap`` over the seeds, ``lax.scan`` over the steps, one compiled call a
    # segment. Convolutions are the exception on XLA's CPU backend (the timings: bench/tried.md):
    # - inside a while loop (which ``lax.scan`` compiles to) a convolution runs about 10x slower
    #   than jitted alone (jax-ml/jax#12868), so conv models take their steps a few to a call;
    # - a vmapped convolution becomes a grouped convolution, which XLA's CPU backend runs slowly,
    #   so the seeds of a conv model are a loop inside the compiled step.
    def _each_seed(self, step):
        """``step`` for one seed → the same for all K (leading seed axis on every argument)."""
        if not self.convolutional:
            return jax.vmap(step)

        def each(*args):
            outs = [step(*jax.tree.map(lambda a: a[i], args)) for i in range(self.k)]
            return jax.tree.map(lambda *seeds: jnp.stack(seeds), *outs)
        return each

    @staticmethod
    def _gathered(step):
        """One step on the images ``idx_t`` (K, B) of the whole training set, gathered on the
        device."""
        def gathered(state, x_all, y_all, idx_t):
            return step(state, x_all[idx_t], y_all[idx_t])
        return gathered

    @classmethod
    def _scan(cls, step):
        def steps(state, x_all, y_all, idx):
            """idx: (S, K, B) image indices; the images are gathered on the device."""
            def body(state, idx_t):
                return cls._gathered(step)(state, x_all, y_all, idx_t)

            state, (loss_sums, corrects) = jax.lax.scan(body, state, idx)
            return state, loss_sums.sum(0), corrects.sum(0)

        return steps

    @staticmethod
    def _unrolled(one_step, n):
        """n steps of ``one_step`` written out one after the other in one program (no while loop:
        idx (n, K, B)); returns (state, (loss sums, corrects)) summed over the n steps."""
        def steps(state, x_all, y_all, idx):
            losses, corrects = [], []
            for t in range(n):
                state, (loss_sum, correct) = one_step(state, x_all, y_all, idx[t])
                losses.append(loss_sum)
                corrects.append(correct)
            return state, (jnp.stack(losses).sum(0), jnp.stack(corrects).sum(0))

        return steps

    @staticmethod
    def _loop(one_step, chunk_steps, n):
        """``_scan``'s signature and answer, as a Python loop of compiled calls: ``chunk_steps``
        (``_unrolled``: n steps in one call) while n steps remain, then ``one_step`` (``idx``: a
        NumPy array, each call's indices sent to the device as it is called)."""
        def steps(state, x_all, y_all, idx):
            losses, corrects = [], []
            full = len(idx) - len(idx) % n
            calls = [(chunk_steps, idx[s:s + n]) for s in range(0, full, n)]
            calls += [(one_step, idx_t) for idx_t in idx[full:]]
            for call, part in calls:
                state, (loss_sum, correct) = call(state, x_all, y_all, part)
                losses.append(loss_sum)
                corrects.append(correct)
            return state, jnp.stack(losses).sum(0), jnp.stack(corrects).sum(0)

        return steps

    # -- training and evaluation of all K seeds (the engine of bnlab.lab.loop) -----------------
    def describe(self):
        return {"backend": "jax", "path": "jax-vmap" if self.k > 1 else "jax-scan",
                "seeds_together": self.k}

    @staticmethod
    def inputs(x, y):
        """The training images on the device, gathered there step by step."""
        return jnp.asarray(x, dtype="float32"), jnp.asarray(y)

    def train_epoch(self, x_dev, y_dev, epoch, batch_size):
        """One epoch for every seed, each on its own order; returns (loss, accuracy), each (K,)."""
        n = x_dev.shape[0]
        orders = np.stack([recipe.epoch_order(c["seed"], epoch, n) for c in self.configs])
        full = n // batch_size
        idx = orders[:, :full * batch_size].reshape(self.k, full, batch_size).transpose(1, 0, 2)
        loss_sum, correct = 0.0, 0
        for segment in self._segments(idx):
            self.state, loss, right = self._train_steps(self.state, x_dev, y_dev, segment)
            loss_sum, correct = loss_sum + loss, correct + right
            self._count_steps(len(segment))
        rest = orders[:, full * batch_size:]
        if rest.shape[1]:  # the last, smaller batch, as fit trains it
            self.state, (loss_rest, correct_rest) = self._train_step(
                self.state, x_dev[jnp.asarray(rest)], y_dev[jnp.asarray(rest)])
            loss_sum, correct = loss_sum + loss_rest, correct + correct_rest
            self._count_steps(1)
        return np.asarray(loss_sum) / n, np.asarray(correct) / n

    # -- the activation probe (bnlab.tools.probe) -----------------------------------------------
    def attach_probe(self, spec, arrays):
        """Record every seed's probe (``spec``: a trial config's ``probe``; ``arrays``: split ->
        (x, y)) at step 0 and every ``spec["every"]`` steps: one vmapped sub-model call."""
        spec = probe_tools.check_spec(spec)
        chosen = probe_tools.resolve(self.model, spec["layers"], spec["unit"])
        inputs = precise.input_model(self.model, [layer for _, layer in chosen])
        where = {id(v): i for i, v in enumerate(self.model.trainable_variables)}
        trainable_at = [where[id(v)] for v in inputs.trainable_variables]
        where = {id(v): i for i, v in enumerate(self.model.non_trainable_variables)}
        non_trainable_at = [where[id(v)] for v in inputs.non_trainable_variables]
        training = spec["mode"] == "training"

        def capture(trainable, non_trainable, x):
            return precise.as_list(inputs.stateless_call(
                [trainable[i] for i in trainable_at], [non_trainable[i] for i in non_trainable_at],
                x, training=training)[0])

        self._capture = jax.jit(jax.vmap(capture, in_axes=(0, 0, None)))
        self._probe_x = jnp.asarray(probe_tools.probe_images(spec, arrays), dtype="float32")
        self.probes = [probe_tools.ProbeRecord([key for key, _ in chosen], spec)
                       for _ in range(self.k)]
        self._probe_now()

    def _segments(self, idx):
        """idx (S, K, B) cut after every step where a probe is due (all of it without a probe)."""
        if self.probes is None:
            return [idx]
        cuts = [s for s in range(1, len(idx)) if self.probes[0].due(self.step + s)]
        return np.split(idx, cuts)

    def _count_steps(self, steps):
        self.step += steps
        if self.probes is not None and self.probes[0].due(self.step):
            self._probe_now()

    def _probe_now(self):
        trainable, non_trainable, _ = self.state
        outputs = self._capture(trainable, non_trainable, self._probe_x)
        for i, record in enumerate(self.probes):
            record.add(self.step, [np.asarray(o[i]) for o in outputs])

    def train_steps(self, x_dev, y_dev, idx):
        """Steps on idx (K, S, B), finished when it returns."""
        for segment in self._segments(idx.transpose(1, 0, 2)):
            self.state, _, _ = self._train_steps(self.state, x_dev, y_dev, segment)
            self._count_steps(len(segment))
        jax.block_until_ready(self.state)

    def evaluate(self, x, y):
        """Inference-mode (loss, accuracy) of every seed on the same images: two (K,) arrays."""
        if len(x) == 0:
            return np.full(self.k, np.nan), np.full(self.k, np.nan)
        trainable, non_trainable, _ = self.state
        loss_sum, correct = np.zeros(self.k), np.zeros(self.k)
        for start in range(0, len(x), recipe.EVAL_BATCH_SIZE):
            xb, yb = x[start:start + recipe.EVAL_BATCH_SIZE], y[start:start + recipe.EVAL_BATCH_SIZE]
            loss, right = self._eval_shared(trainable, non_trainable, xb, yb)
            loss_sum += np.asarray(loss)
            correct += np.asarray(right)
        return loss_sum / len(x), correct / len(x)

    def evaluate_own(self, x, y):
        """Inference-mode (loss, accuracy) of each seed on its own images x: (K, B, ...)."""
        trainable, non_trainable, _ = self.state
        loss, right = self._eval_own(trainable, non_trainable, x, y)
        return np.asarray(loss) / x.shape[1], np.asarray(right) / x.shape[1]

    def keras_model(self, i):
        """Seed i's state (weights, moving statistics, optimizer) put back into the Keras model."""
        variables = (self.model.trainable_variables, self.model.non_trainable_variables,
                     self.optimizer.variables)
        for group, values in zip(variables, self.state):
            for variable, value in zip(group, values):
                variable.assign(value[i])
        return self.model

    def predict(self, x):
        """Inference-mode outputs of every seed: (K, N, classes)."""
        trainable, non_trainable, _ = self.state
        return np.asarray(self._predict(trainable, non_trainable, x))


def run_group(configs, arrays, class_names, *, progress=False, save_models=None):
    """Train the seeds of ``configs`` together (``bnlab.lab.loop`` driving a ``SeedGroup``);
    returns one (history, results) per config. With ``save_models`` (a folder) each seed's
    trained model is saved there as a Keras model."""
    return loop.run(SeedGroup(configs), arrays, class_names, progress=progress,
                    save_models=save_models)
