"""Reading and writing OpenFold-3 checkpoints in openfold3's own formats.

Two layouts exist, both read with ``torch.load(weights_only=True)``:

- the released parameters (``of3-ob-2025-06-30-174k.pt``): the EMA weights alone,
  a flat ``{parameter name: tensor}`` dict keyed like ``OpenFold3.state_dict()``
  (what openfold3's ``scripts/dev/convert_ckpt_to_ema_only.py`` writes);
- a training checkpoint (PyTorch Lightning): ``state_dict`` (keys prefixed
  ``model.``), ``ema`` (``{"params", "decay"}``) and ``hyper_parameters`` holding
  the model config. As openfold3's inference runner does, the EMA weights are
  used when the checkpoint has them.

Only the globals openfold3 itself allow-lists for its checkpoints
(``projects/of3_all_atom/safe_globals.py``) may be unpickled.
"""

from __future__ import annotations

import logging
import operator
import pathlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bionemo_lite.errors import CheckpointError
from bionemo_lite.weights import safe_torch_load

logger = logging.getLogger(__name__)

VERSION_KEY = "version_tensor"


def allowed_globals() -> list[Any]:
    """What a training checkpoint's ``hyper_parameters`` pickle refers to, nothing more."""
    import ml_collections as mlc
    from openfold3.projects.of3_all_atom.model import OpenFold3

    return [
        OpenFold3,  # hyper_parameters["model_class"]: a class reference, never instantiated here
        mlc.ConfigDict,
        mlc.FieldReference,
        mlc.config_dict._Op,  # derived config fields such as c_s_input = c_token + 65
        operator.add,
        int,
        bool,
        float,
        pathlib.PosixPath,  # hyper_parameters["log_dir"]
        (pathlib.PosixPath, "pathlib._local.PosixPath"),  # the same, pickled by Python >= 3.13
    ]


@dataclass
class OpenFoldCheckpoint:
    """What was read from a checkpoint file.

    Attributes:
        params: ``OpenFold3`` state-dict entries (no ``model.`` prefix).
        config: the model config a training checkpoint carries, else None.
        layout: ``"ema-only"``, ``"training-ema"`` or ``"training-state_dict"``.
    """

    params: dict[str, torch.Tensor]
    config: Any | None
    layout: str

    @property
    def version(self) -> str | None:
        v = self.params.get(VERSION_KEY)
        return None if v is None else ".".join(str(int(x)) for x in v.tolist())


def _strip_prefix(state: dict[str, Any], prefix: str = "model.") -> dict[str, torch.Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def read_checkpoint(path: Path) -> OpenFoldCheckpoint:
    """Read an OpenFold-3 checkpoint file (either layout).

    Raises:
        CheckpointError: a directory (DeepSpeed shards), an unreadable file, or a
            dict that is neither layout.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a directory (a DeepSpeed checkpoint?); convert it to a single file first, e.g. with "
            "openfold3's scripts/dev/convert_ckpt_to_ema_only.py"
        )
    ckpt = safe_torch_load(path, allowed_globals())
    if not isinstance(ckpt, dict) or not ckpt:
        raise CheckpointError(f"{path}: expected a dict of tensors or a training checkpoint, got {type(ckpt).__name__}")

    config = None
    hparams = ckpt.get("hyper_parameters")
    if isinstance(hparams, dict):
        config = hparams.get("config") or hparams.get("model_config")

    if "state_dict" in ckpt or "module" in ckpt or "ema" in ckpt:
        ema = ckpt.get("ema")
        ema_params = ema.get("params") if isinstance(ema, dict) else None
        # An EMA that was never initialised holds only the version tensor.
        if isinstance(ema_params, dict) and set(ema_params) - {VERSION_KEY}:
            params, layout = dict(ema_params), "training-ema"
        elif "state_dict" in ckpt or "module" in ckpt:
            params, layout = _strip_prefix(ckpt.get("state_dict") or ckpt["module"]), "training-state_dict"
        else:
            raise CheckpointError(f"{path}: training checkpoint without model weights")
    else:
        params, layout = ckpt, "ema-only"

    bad = [k for k, v in params.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not an OpenFold-3 parameter file (non-tensor entries such as {bad[0]!r})")
    return OpenFoldCheckpoint(params=params, config=config, layout=layout)


def load_into(model: torch.nn.Module, ckpt: OpenFoldCheckpoint, path: Path) -> None:
    """Strictly load `ckpt` into `model` (built on the meta device: tensors are assigned).

    A checkpoint without a version tensor is accepted with a warning, as openfold3
    does; one whose version differs from this openfold3's model version is refused.

    Raises:
        CheckpointError: missing or unexpected parameters (the architecture differs:
            pass ``model_update``), wrong shapes, or a model-version mismatch.
    """
    from openfold3.projects.of3_all_atom.model import MODEL_VERSION

    params = dict(ckpt.params)
    expected = set(model.state_dict())
    missing = expected - set(params)
    unexpected = set(params) - expected
    if missing == {VERSION_KEY} and not unexpected:
        logger.warning("%s has no version tensor; assuming it matches openfold3's model version", path)
        params[VERSION_KEY] = MODEL_VERSION.clone()
    elif missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit this OpenFold-3 architecture: {len(missing)} missing parameters "
            f"(e.g. {sorted(missing)[:3]}), {len(unexpected)} unexpected (e.g. {sorted(unexpected)[:3]}). "
            "A checkpoint of another size needs its config: pass model_update={'custom': {...}} "
            "(openfold3's runner-yaml model_update section)"
        )
    elif not torch.equal(params[VERSION_KEY].float(), MODEL_VERSION):
        raise CheckpointError(
            f"{path} is an OpenFold-3 model version {OpenFoldCheckpoint(params, None, '').version} checkpoint; "
            f"the installed openfold3 runs version {'.'.join(str(int(x)) for x in MODEL_VERSION.tolist())}"
        )
    try:
        model.load_state_dict(params, strict=True, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{path} does not fit this OpenFold-3 architecture: {exc}") from exc


def write_ema_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Save `model`'s weights in the released layout (a flat state dict)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)
    return path


def write_training_checkpoint(model: torch.nn.Module, config: Any, path: Path, global_step: int = 0) -> Path:
    """Save `model` like a PyTorch Lightning training checkpoint of openfold3's runner.

    Same top-level keys as Lightning's ``dump_checkpoint(weights_only=True)`` plus
    openfold3's ``ema`` entry; the EMA params equal the weights here.
    """
    import pytorch_lightning as pl
    from openfold3.projects.of3_all_atom.model import OpenFold3

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(
        {
            "epoch": 0,
            "global_step": global_step,
            "pytorch-lightning_version": pl.__version__,
            "state_dict": {f"model.{k}": v for k, v in state.items()},
            "loops": {},
            "hparams_name": "kwargs",
            # What Lightning's save_hyperparameters() collects from OpenFold3AllAtom(model_config, log_dir).
            "hyper_parameters": {"model_class": OpenFold3, "config": config, "model_config": config, "log_dir": None},
            "ema": {"params": {k: v.clone() for k, v in state.items()}, "decay": 0.999},
        },
        path,
    )
    return path
