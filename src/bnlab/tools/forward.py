"""A model's outputs on a batch, its state left as it was: what check, PreciseBN and the probes
need when they run a trained model over many batches.

A call in training mode updates the moving statistics, and any call may advance a random
generator; both are undone here. On JAX the call is ``model.stateless_call`` (the state handed
in, the new state returned and dropped) compiled whole with ``jax.jit`` and kept for the model's
next batches: run op by op, JAX compiles and dispatches each primitive of the net on its own.
Elsewhere the model is called and its non-trainable variables are assigned back."""

import weakref

import keras

_PROGRAMS = weakref.WeakKeyDictionary()  # model -> {training: jitted call}


def outputs(model, x, *, training):
    """``model(x, training=training)``, the model's non-trainable variables unchanged."""
    if keras.backend.backend() == "jax":
        return _jitted(model, training)(*values(model), x)
    saved = [v.numpy() for v in model.non_trainable_variables]
    try:
        return model(x, training=training)
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)


def values(model):
    """The model's trainable and non-trainable variables' values, as stateless_call takes them."""
    return ([v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables])


def _jitted(model, training):
    import jax

    programs = _PROGRAMS.setdefault(model, {})
    if training not in programs:
        ref = weakref.ref(model)  # the program must not keep its model alive

        def call(trainable, non_trainable, x):
            return ref().stateless_call(trainable, non_trainable, x, training=training)[0]

        programs[training] = jax.jit(call)
    return programs[training]
