"""A model file for the tools: a Keras ``.keras``, or a PyTorch ``.pt2`` (``torch.export.save``)
converted in memory (``bnlab.tools.convert``).

``load(path)`` returns ``(model, names, layout)``: the Keras model; {Keras layer name: PyTorch
module} for a converted model (empty for a Keras file), so that findings name what the user wrote;
and the layout of the user's arrays: ``"nchw"`` for a PyTorch model whose input is channels-first
((N, C, *S): images, volumes, signals), ``"pytorch"`` for another PyTorch model, ``"nhwc"`` for
Keras.
"""

from pathlib import Path

from bnlab.errors import UserError


def load(path):
    path = Path(path)
    if path.suffix == ".pt2":
        from bnlab.tools.convert import torch_to_keras

        model, names, info = torch_to_keras.load_pt2(path)
        return model, names, "nchw" if info["inputs"][0] == "cf" else "pytorch"
    import zipfile

    import keras

    if path.suffix == ".keras" and not zipfile.is_zipfile(path):  # Keras says "File not found"
        raise UserError(f"{path} is not a Keras model file (not a complete .keras zip archive: "
                        "truncated or damaged; save the model again)")
    try:
        model = keras.saving.load_model(path)
    except Exception as exc:  # any failure to read it means: not a Keras model file bnlab reads
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a Keras model file ({reason})") from None
    return model, {}, "nhwc"
