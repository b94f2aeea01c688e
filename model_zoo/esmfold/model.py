"""ESMFold behind ``fold``, running transformers' ``EsmForProteinFolding``.

transformers carries ESMFold's own OpenFold modules, so nothing else is needed.
Three things differ from what a caller of transformers would expect, and are
handled here:

- ``forward(input_ids)`` takes AlphaFold-order residue ids (openfold's
  ``restype_order_with_x``), not ESM-2 token ids: `inputs.encode` builds them.
- ``plddt`` comes per atom on a 0-1 scale: results carry the CA value per
  residue on 0-100, and the B-factor column holds the per-atom value on 0-100
  (as fair-esm writes it).
- ``infer`` knows no ``:`` chain separator: the upstream linker layout is
  rebuilt (`inputs.encode`) and the linker is removed from every output.

Precision follows upstream: on GPU the ESM-2 stem runs in float16 (or
bfloat16 when asked), the folding trunk and structure module always in
float32 (fp16 there overflows); on CPU everything is float32 unless asked.
"""

from __future__ import annotations

import json
import logging
import pickle
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bionemo_lite.batching import is_out_of_memory
from bionemo_lite.cancellation import cancellable_modules
from bionemo_lite.errors import CheckpointError, InvalidInputError
from bionemo_lite.model import BioModel
from bionemo_lite.options import check_int
from bionemo_lite.records import Record
from bionemo_lite.relax import fold_and_relax
from bionemo_lite.results import Structure
from bionemo_lite.spec import ModelSpec
from bionemo_lite.structures import atoms_from_atom37, render
from bionemo_lite.weights import check_safetensors, resolve_dtype, safe_torch_load

from .config import differences, read_config, shape_of
from .inputs import UNKNOWN_INDEX, FoldInput, encode

logger = logging.getLogger(__name__)

CA_INDEX = 1  # atom37 / atom14 index of the alpha carbon
MAX_RECYCLES_ACCEPTED = 64  # an upper bound so a request cannot keep a device busy for ever
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
)
# Buffers that transformers computes itself (not a sign of an incomplete checkpoint).
_COMPUTED_KEYS = ("inv_freq", "position_ids", "af2_to_esm")


@dataclass
class Prediction:
    """Raw per-atom outputs of one fold, linker removed, before any text is written.

    Attributes:
        layout: the input as the model saw it.
        positions: ``[N, 37, 3]`` float32 atom37 coordinates (Angstrom).
        atom_mask: ``[N, 37]`` bool, atoms that exist (``X`` residues: CA only).
        plddt_atoms: ``[N, 37]`` pLDDT per atom, 0-100.
        pae: ``[N, N]`` predicted aligned error (Angstrom).
        ptm: predicted TM-score, computed over the joined sequence as upstream
            (linker included for complexes).
    """

    layout: FoldInput
    positions: np.ndarray
    atom_mask: np.ndarray
    plddt_atoms: np.ndarray
    pae: np.ndarray
    ptm: float

    @property
    def plddt(self) -> np.ndarray:
        """Per-residue pLDDT (the CA atom's), 0-100."""
        return self.plddt_atoms[:, CA_INDEX].copy()


class ESMFoldModel(BioModel):
    """A loaded ESMFold; see `fold`.

    Attributes:
        network: the transformers ``EsmForProteinFolding`` module.
        esm_dtype: dtype of the ESM-2 stem (the folding trunk is always float32).
    """

    def __init__(self, spec: ModelSpec, network: Any, device: str, esm_dtype: torch.dtype,
                 config: dict[str, Any], max_length: int | None = None):
        super().__init__(spec, device=device, dtype=str(esm_dtype).removeprefix("torch."), config=config)
        self.network = network
        self.esm_dtype = esm_dtype
        self._max_length = int(max_length) if max_length is not None else spec.max_length
        self._default_chunk_size = network.trunk.chunk_size
        cancellable_modules(network.trunk.blocks)  # transformers' recycling loop calls them: cancel between blocks
        # One fold at a time: the chunk size is module state, and folds gain nothing from overlapping.
        self._lock = threading.Lock()

    @property
    def max_length(self) -> int:
        """The most residues (all chains, linkers not counted) one fold accepts."""
        return self._max_length

    def fold(
        self,
        sequence: str | Record,
        *,
        num_recycles: int | None = None,
        chunk_size: int | None = None,
        record_id: str | None = None,
        relax: bool = False,
        **options: Any,
    ) -> Structure:
        """Predict the structure of one protein or complex.

        Args:
            sequence: residues, or a `Record` (its id names the structure and its errors);
                chains of a complex joined by ``:`` (``"MKT...:GSH..."``).
                Case and whitespace are ignored; X B U Z O are folded as unknown
                residues (written as ``UNK`` with a CA atom only).
            num_recycles: extra passes through the trunk (0 = a single pass);
                None is upstream's default, ``max_recycles`` passes in all
                (4 for esmfold_v1, the same as ``num_recycles=3``).
            chunk_size: axial-attention chunk, trading speed for memory on long
                sequences (e.g. 64 or 32); None keeps the checkpoint's setting,
                0 switches chunking off.
            record_id: the record's id, used in error messages and as the
                structure's id (default: the `Record`'s id, else ``"sequence"``).
            relax: also AMBER-relax the prediction (`bionemo_lite.relax.relax_structure`, the
                ``[relax]`` extra); the result's ``relaxed`` holds it and its figures.

        Returns:
            `Structure` with PDB and mmCIF text (pLDDT 0-100 in the B-factors),
            per-residue pLDDT, pTM and the PAE matrix, chains ``A``, ``B``, ...
            in input order, linker removed. ``pdb`` is None (and
            ``extra["pdb_error"]`` says why) if the coordinates do not fit PDB.

        Raises:
            InvalidInputError: bad residue (with its chain and position), empty
                chain, too long, a bad option value, or out of device memory;
                all but the last before any model work.
        """
        if isinstance(sequence, Record):
            record_id = record_id or sequence.id
            sequence = sequence.sequence
        if options:
            raise InvalidInputError(
                f"model {self.name!r} does not accept the option(s) {', '.join(sorted(options))}; it accepts: "
                "num_recycles, chunk_size, relax (ESMFold needs no MSA, templates or ligands)",
                record=record_id,
            )
        rid = record_id or "sequence"
        return fold_and_relax(lambda: self.to_structure(
            self.predict(sequence, num_recycles=num_recycles, chunk_size=chunk_size, record_id=rid), rid), relax)

    def predict(
        self, sequence: str, *, num_recycles: int | None = None, chunk_size: int | None = None,
        record_id: str = "sequence",
    ) -> Prediction:
        """Run the network and return the raw arrays (`fold` without the text)."""
        if num_recycles is not None:
            num_recycles = check_int("num_recycles", num_recycles, low=0, high=MAX_RECYCLES_ACCEPTED, record=record_id)
        if chunk_size is not None:
            chunk_size = check_int("chunk_size", chunk_size, low=0, record=record_id)
        layout = encode(sequence, self.max_length, record_id)
        chunk = self._default_chunk_size if chunk_size is None else (chunk_size or None)

        net = self.network
        aatype = torch.from_numpy(layout.aatype)[None].to(self.device)
        residx = torch.from_numpy(layout.residue_index)[None].to(self.device)
        mask = torch.ones_like(aatype)
        with self._lock, torch.inference_mode():
            net.trunk.set_chunk_size(chunk)
            try:
                out = net(aatype, attention_mask=mask, position_ids=residx, num_recycles=num_recycles)
            except Exception as exc:
                if is_out_of_memory(exc):
                    _release_device_memory()
                    raise InvalidInputError(
                        f"out of device memory folding {layout.num_residues} residues"
                        f" (chunk_size={chunk}); retry with a smaller chunk_size (64, 32) or a shorter sequence",
                        record=record_id,
                    ) from exc
                raise
            finally:
                net.trunk.set_chunk_size(self._default_chunk_size)
            return _prediction(layout, out)

    def to_structure(self, pred: Prediction, record_id: str = "sequence") -> Structure:
        """Write `pred` as PDB and mmCIF and wrap it with its confidences."""
        layout = pred.layout
        atoms = atoms_from_atom37(
            pred.positions,
            pred.atom_mask,
            layout.residues,
            chain_ids=layout.per_residue_chain_ids(),
            residue_numbers=layout.per_residue_numbers(),
            b_factors=pred.plddt_atoms,
        )
        text = render(atoms, name=record_id)
        extra: dict[str, Any] = {}
        if text.pdb_error:
            extra["pdb_error"] = text.pdb_error
        return Structure(
            model=self.name,
            id=record_id,
            sequence=layout.sequence,
            pdb=text.pdb,
            mmcif=text.mmcif,
            plddt=pred.plddt.astype(np.float32),
            ptm=pred.ptm,
            pae=pred.pae.astype(np.float32),
            chains=list(layout.chain_ids),
            extra=extra,
        )

    def close(self) -> None:
        self.network = None
        _release_device_memory()


def _prediction(layout: FoldInput, out: Any) -> Prediction:
    from transformers.models.esm.openfold_utils.feats import atom14_to_atom37

    keep = torch.from_numpy(~layout.is_linker).to(out.positions.device)
    atom14 = out.positions[-1].float()  # [1, T, 14, 3], last structure-module block
    atom37 = atom14_to_atom37(atom14, out)[0]
    exists = out.atom37_atom_exists[0].bool()
    # Unknown residues have no atoms in AlphaFold's tables (upstream writes nothing for
    # them, esm #483); their backbone frame's origin is the CA, so keep that atom.
    unknown = torch.from_numpy(layout.aatype == UNKNOWN_INDEX).to(atom14.device)
    if bool(unknown.any()):
        translation = out.frames[-1][0, :, 4:].float()  # [T, 3], already in Angstrom
        atom37[unknown, CA_INDEX] = translation[unknown]
        exists[unknown, CA_INDEX] = True
    return Prediction(
        layout=layout,
        positions=atom37[keep].cpu().numpy().astype(np.float32),
        atom_mask=exists[keep].cpu().numpy(),
        plddt_atoms=(100.0 * out.plddt[0].float()[keep]).cpu().numpy(),
        pae=out.predicted_aligned_error[0].float()[keep][:, keep].cpu().numpy(),
        ptm=float(out.ptm),
    )


def _release_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _checkpoint_folder(path: Path) -> Path:
    """The Hugging Face directory behind `path` (a folder, or a file inside one)."""
    if path.is_dir():
        return path
    if path.suffix == ".pt":
        raise CheckpointError(
            f"{path} looks like a fair-esm checkpoint (esmfold_3B_v1.pt); convert it once to the Hugging Face "
            f"layout: `python -m bionemo_lite.zoo.esmfold.convert {path} OUT_DIR --esm2 esm2_t36_3B_UR50D.pt`, "
            "then pass OUT_DIR as the weights"
        )
    if path.name in WEIGHT_FILES or path.name == "config.json":
        return path.parent
    raise CheckpointError(f"{path}: esmfold_v1 loads a Hugging Face directory (config.json + weights)")


def load_esmfold(
    spec: ModelSpec,
    path: Path,
    device: str = "cpu",
    dtype: str | None = None,
    max_length: int | None = None,
    **options: Any,
) -> ESMFoldModel:
    """Loader for ``esmfold_v1`` (the spec's ``loader``).

    The architecture comes from the checkpoint's config.json: a fine-tuned or
    custom-size ESMFold loads too, with a warning naming what differs.

    Args:
        spec: the variant's card.
        path: Hugging Face directory (``config.json`` + ``model.safetensors`` or
            ``pytorch_model.bin``), or a file inside it.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: precision of the ESM-2 stem; None is float32 on CPU and float16
            on GPU (upstream). The folding trunk is always float32.
        max_length: raise the residue limit above the spec's (memory permitting).

    Raises:
        CheckpointError: not an ESMFold directory, weights missing or of the wrong shape.
    """
    if options:
        raise TypeError(f"esmfold_v1 loader got unknown option(s): {', '.join(sorted(options))}")
    folder = _checkpoint_folder(Path(path))
    config = read_config(folder)
    shape = shape_of(config)
    diff = differences(shape)
    if diff:
        described = ", ".join(f"{k}={found} (published {pub})" for k, (found, pub) in diff.items())
        warnings.warn(
            f"{folder} is not the published {spec.name} architecture: {described}; loading it as a custom-size "
            "ESMFold (its config.json decides the shape)",
            stacklevel=2,
        )
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise CheckpointError(f"{folder}: no weights file ({' or '.join(WEIGHT_FILES[::2])}) next to config.json")

    esm_dtype = resolve_dtype(dtype, device, default_gpu="float16")
    network = _load_network(folder)
    network.to(device)
    network.esm.to(esm_dtype)  # stem only: the trunk stays float32 (fp16 overflows there)
    network.eval()
    network.requires_grad_(False)
    loaded = {**dict(spec.config), **shape}
    return ESMFoldModel(spec, network, str(device), esm_dtype, loaded, max_length=max_length)


def _weight_files(folder: Path) -> list[Path]:
    """The files transformers will read, in its order of preference (safetensors first)."""
    name = next(n for n in WEIGHT_FILES if (folder / n).is_file())
    if not name.endswith(".index.json"):
        return [folder / name]
    index = folder / name
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{index}: not a readable shard index: {exc}") from exc
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise CheckpointError(f"{index}: lists shards that are not there: {', '.join(missing[:3])}")
    return [folder / s for s in shards]


def check_weight_files(folder: Path) -> None:
    """Open every weight file of `folder` our safe way before transformers does.

    A cut-off or random file, or a pickle that would run code, is then a
    `CheckpointError` naming the file (transformers' own errors are of other
    types and do not name it). Safetensors files are checked from their
    header; ``.bin`` files are unpickled tensors-only and memory-mapped, so
    nothing large is read twice.

    Raises:
        CheckpointError: naming the first unreadable or refused file.
    """
    for path in _weight_files(folder):
        if path.suffix == ".safetensors":
            check_safetensors(path)
        else:
            safe_torch_load(path, mmap=True)


def _load_network(folder: Path) -> Any:
    from safetensors import SafetensorError
    from transformers import EsmConfig, EsmForProteinFolding

    check_weight_files(folder)
    try:
        config = EsmConfig.from_pretrained(str(folder), local_files_only=True)
        # With fp16_esm set (as in facebook/esmfold_v1) transformers halves the stem before
        # loading, so float32 weights would be rounded to float16 even for a float32 run;
        # load at full precision and cast the stem afterwards.
        config.esmfold_config.fp16_esm = False
        network, info = EsmForProteinFolding.from_pretrained(
            str(folder), config=config, dtype=torch.float32, output_loading_info=True, local_files_only=True,
            weights_only=True,
        )
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as exc:
        raise CheckpointError(f"{folder}: could not load as EsmForProteinFolding: {exc}") from exc
    missing = [k for k in info.get("missing_keys", ()) if not k.endswith(_COMPUTED_KEYS)]
    mismatched = list(info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise CheckpointError(
            f"{folder}: the weights do not match config.json: "
            + (f"{len(missing)} missing (e.g. {', '.join(sorted(missing)[:3])})" if missing else "")
            + ("; " if missing and mismatched else "")
            + (f"{len(mismatched)} of another shape (e.g. {mismatched[0]})" if mismatched else "")
        )
    unexpected = list(info.get("unexpected_keys", ()))
    if unexpected:
        logger.warning("%s: %d unused weights ignored (e.g. %s)", folder, len(unexpected), unexpected[0])
    return network
