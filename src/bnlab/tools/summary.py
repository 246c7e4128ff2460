"""What ``bnlab summary`` prints beside Keras's ``model.summary()``: the parameter counts and each
norm layer (``models.NORM_LAYERS``) with its settings and its variables."""

from bnlab import models

SETTINGS = ("groups", "momentum", "epsilon", "renorm_momentum", "virtual_batch_size")


def norm_layer_lines(model):
    """Lines of text: the parameter counts, then per norm layer its index, name, class and
    settings, and each of its variables' path, shape and trainability."""
    total, trainable, non_trainable = models.count_params(model)
    lines = [f"parameters: {total:,} total, {trainable:,} trainable, {non_trainable:,} "
             "non-trainable"]
    for index, layer in enumerate(model.layers):
        if isinstance(layer, models.NORM_LAYERS):
            settings = ", ".join(f"{key} {getattr(layer, key)}" for key in SETTINGS
                                 if getattr(layer, key, None) is not None)
            lines.append(f"\nlayer {index}: {layer.name} ({type(layer).__name__}, {settings})")
            lines += [f"  {variable.path:<45} shape {str(tuple(variable.shape)):<8} "
                      f"trainable={variable.trainable}" for variable in layer.variables]
    return lines
