"""``bnlab convert IN OUT``: a ``.pt2`` to a ``.keras`` or back, checked before it is written."""

import os
from pathlib import Path

from bnlab import paths
from bnlab.errors import UserError
from bnlab.tools.convert import verify


def convert_file(source, target):
    """Convert ``source`` into ``target`` (the suffixes say the direction); returns the lines to
    print. Raises UserError (one line) for a bad path, an unsupported op, or a conversion whose
    outputs disagree beyond ``verify.TOLERANCE`` (then nothing is written)."""
    source, target = Path(source), Path(target)
    directions = {(".pt2", ".keras"), (".keras", ".pt2")}
    if (source.suffix, target.suffix) not in directions:
        raise UserError(f"convert wants IN.pt2 OUT.keras or IN.keras OUT.pt2, not "
                         f"{source.name} -> {target.name}")
    if not source.is_file():
        raise UserError(f"no model file at {source}")
    if target.exists():
        raise UserError(f"{target} exists; choose another name or remove it first")
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        raise UserError(f"cannot write {target}: {target.parent} is not a writable folder")
    import torch

    if source.suffix == ".pt2":
        from bnlab.tools.convert import torch_to_keras

        program = torch_to_keras.load_program(source)
        model, _, pairs, info = torch_to_keras.to_keras(program)
        save = model.save
    else:
        from bnlab.tools.convert import keras_to_torch
        from bnlab.tools.load_model import load

        model = load(source)[0]
        program, pairs, info = keras_to_torch.export(model)

        def save(path):
            torch.export.save(program, str(path))
    lines, ok = verify.summary(verify.compare(model, program, pairs, info))
    if not ok:
        raise UserError(f"the conversion disagrees beyond {verify.TOLERANCE:g}: {lines[0]}; "
                         f"{target} not written")

    def write(temporary):
        temporary.unlink()  # each saver creates its file itself
        save(temporary)
    paths.write_whole(target, write, suffix=target.suffix)
    bn = len(pairs)
    return [f"{source} -> {target}: {bn} BN layer(s) with running statistics"] + info["notes"] \
        + lines
