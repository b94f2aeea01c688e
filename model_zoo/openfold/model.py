"""`OpenFoldModel`: an OpenFold-3 network loaded once, folding requests in-process.

The network (openfold3's ``OpenFold3`` module) and the featuriser are built at
load time and reused by every ``fold``; there is no per-request process, no
Lightning trainer and no data loader. Everything runs offline: MSAs come from
the request (or openfold3's query-only alignment), templates are off, the CCD
is the local copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bionemo_lite.cancellation import cancellable_modules
from bionemo_lite.errors import BackendUnavailableError, InvalidInputError
from bionemo_lite.model import BioModel
from bionemo_lite.options import check_int
from bionemo_lite.records import Record
from bionemo_lite.relax import check_available as check_relax_available
from bionemo_lite.relax import relax_structure
from bionemo_lite.results import Structure
from bionemo_lite.spec import ModelSpec
from bionemo_lite.structures import StructureFormatError
from bionemo_lite.weights import resolve_dtype

from .inputs import FoldRequest, LigandInput, MsaInput, build_request

logger = logging.getLogger(__name__)

FORMATS = ("pdb", "mmcif", "cif")
# Upper bounds so that one request cannot keep a device busy for ever (the defaults are 3, 5 and 200).
MAX_RECYCLES = 64
MAX_DIFFUSION_SAMPLES = 100
MAX_DIFFUSION_STEPS = 10_000
# openfold3 asks for float32 autocast on CPU (unsupported there, so a no-op) and for
# CUDA autocast when run on CPU; both only warn. The query-only MSA warns by design.
_NOISE = (r"In CPU autocast", r"CUDA is not available", r"Expected MSA file")


def _require_openfold3() -> None:
    try:
        import openfold3  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(
            "OpenFold-3 needs the optional openfold3 package: pip install 'bionemo-lite[openfold]'"
        ) from exc


class OpenFoldModel(BioModel):
    """OpenFold-3 behind the ``fold`` verb (use `load_openfold` / ``bionemo_lite.load``).

    Attributes:
        network: openfold3's ``OpenFold3`` module (eval mode, on `device`).
        of3_config: its ``ml_collections`` config (per-request options are set on it
            under a lock and restored afterwards).
        max_tokens: the largest request accepted (residues + ligand heavy atoms).
        forward_calls: how many forward passes this model has run.
    """

    def __init__(
        self,
        spec: ModelSpec,
        network: torch.nn.Module,
        of3_config: Any,
        *,
        device: str,
        dtype: str,
        config: dict[str, Any],
        max_tokens: int | None = None,
    ):
        from .featurize import Featurizer

        super().__init__(spec, device=device, dtype=dtype, config=config)
        self.network = network
        cancellable_modules([*network.pairformer_stack.blocks, network.diffusion_module])  # recycles, diffusion steps
        self.of3_config = of3_config
        self.max_tokens = int(max_tokens or spec.max_length)
        self.forward_calls = 0
        self._lock = threading.Lock()
        self._workdir = Path(tempfile.mkdtemp(prefix="bionemo-openfold-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        self.featurizer = Featurizer(self._workdir)

    @property
    def max_length(self) -> int:
        return self.max_tokens

    def prepare(
        self,
        sequence: str | Record | Sequence[str],
        *,
        msa: MsaInput = None,
        ligands: LigandInput | Sequence[LigandInput] | None = None,
        id: str | None = None,
    ) -> FoldRequest:
        """Validate a request without running anything (same checks as `fold`)."""
        return build_request(sequence, msa=msa, ligands=ligands, max_tokens=self.max_tokens, record_id=id)

    def fold(
        self,
        sequence: str | Record | Sequence[str],
        *,
        msa: MsaInput = None,
        ligands: LigandInput | Sequence[LigandInput] | None = None,
        num_recycles: int | None = None,
        chunk_size: int | None = None,
        seed: int = 0,
        num_samples: int | None = None,
        diffusion_steps: int | None = None,
        format: str | None = None,
        id: str | None = None,
        relax: bool = False,
        **options: Any,
    ) -> Structure:
        """Predict the structure of protein chains, optionally with ligands and MSAs.

        Args:
            sequence: one protein sequence, chains joined with ``:``, a list
                of chains, or a `Record` (its id names the result). Residues B, Z, U, O
                are modelled as unknown (UNK), as openfold3 does with letters it lacks.
            msa: a3m text or path per protein chain: one for a single chain, else a
                list (None for chains without) or ``{"A": ..., 1: ...}``. The first row
                must be the chain. Chains without an MSA get the query-only
                alignment (openfold3's MSA-free mode); nothing is ever fetched.
            ligands: SMILES strings or CCD codes (``"ATP"``; a string RDKit reads is a
                SMILES, ``"ccd:CO"`` forces the code), or ``{"smiles": ...}`` /
                ``{"ccd": ...}``; each ligand is its own chain after the proteins. CCD
                codes come from the dictionary biotite ships (no download).
            num_recycles: trunk recycles, 0-64 (default: the config's, 3 for released weights).
            chunk_size: chunk the pair operations to save memory (default: none on CPU;
                openfold3's predict preset on GPU). On GPU openfold3 tunes it downward.
            seed: seeds featurisation and diffusion; same seed, same structure.
            num_samples: diffusion samples, 1-100 (default: the config's, 5); the best by
                openfold3's ranking score is returned.
            diffusion_steps: denoising steps, 1-10000 (default: the config's, 200).
            format: ``"pdb"`` makes a structure that PDB cannot hold an error instead
                of ``pdb=None``; ``"mmcif"``/``"cif"`` or None never fail on that.
            id: the result's id (default: the record's id, else ``"0"``).
            relax: also AMBER-relax the prediction (`bionemo_lite.relax.relax_structure`, the
                ``[relax]`` extra; protein chains only); the result's ``relaxed`` holds it and its figures.
            **options: refused: an unknown option is an `InvalidInputError`, not ignored.

        Returns:
            `Structure`: mmCIF always, PDB when it fits, pLDDT (0-100) and PAE per
            token (one per residue, one per ligand heavy atom; labels in
            ``extra["token_chain_ids"]`` etc.), pTM, ipTM for complexes.

        Raises:
            InvalidInputError: anything wrong with the request, raised before any model work.
            StructureFormatError: ``format="pdb"`` and the prediction does not fit PDB.
        """
        if options:
            raise InvalidInputError(
                f"unknown fold option(s) {', '.join(sorted(options))} for {self.name}; known: msa, ligands, "
                "num_recycles, chunk_size, seed, num_samples, diffusion_steps, format, id, relax",
                record=id,
            )
        if format is not None and format not in FORMATS:
            raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}, got {format!r}", record=id)
        seed = check_int("seed", seed, low=0, record=id)
        for name, value, low, high in (("num_recycles", num_recycles, 0, MAX_RECYCLES),
                                       ("chunk_size", chunk_size, 1, None),
                                       ("num_samples", num_samples, 1, MAX_DIFFUSION_SAMPLES),
                                       ("diffusion_steps", diffusion_steps, 1, MAX_DIFFUSION_STEPS)):
            if value is not None:
                check_int(name, value, low=low, high=high, record=id)
        if relax:
            check_relax_available()  # a missing extra fails before the (slow) fold, as `fold_and_relax`
        request = self.prepare(sequence, msa=msa, ligands=ligands, id=id)
        if self.network is None:
            raise BackendUnavailableError(f"{self.name} was closed; load it again")
        with self._lock:
            structure = self._run(request, num_recycles, chunk_size, seed, num_samples, diffusion_steps)
        if format == "pdb" and structure.pdb is None:
            raise StructureFormatError(structure.extra["pdb_error"])
        return relax_structure(structure) if relax else structure

    def _run(
        self,
        request: FoldRequest,
        num_recycles: int | None,
        chunk_size: int | None,
        seed: int,
        num_samples: int | None,
        diffusion_steps: int | None,
    ) -> Structure:
        from openfold3.core.data.primitives.structure.conformer import ConformerGenerationError
        from openfold3.core.metrics.aggregate_confidence_ranking import get_confidence_scores

        from .featurize import collate
        from .output import split_samples, to_structure

        shared = self.of3_config.architecture.shared
        overrides = [
            (shared, "num_recycles", num_recycles),
            (shared.diffusion, "no_full_rollout_samples", num_samples),
            (shared.diffusion, "no_full_rollout_steps", diffusion_steps),
            (self.of3_config.settings.memory.eval, "chunk_size", chunk_size),
        ]
        timings: dict[str, float] = {}
        with _config_overrides(overrides), _seeded(seed, self.device), tempfile.TemporaryDirectory(
            dir=self._workdir, prefix="request-"
        ) as tmp, warnings.catch_warnings():
            for pattern in _NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            t0 = time.perf_counter()
            try:
                features = self.featurizer.features(request, Path(tmp))
            except ConformerGenerationError as exc:
                raise InvalidInputError(
                    f"openfold3 could not build a 3D reference conformer (RDKit ETKDG) for a ligand of "
                    f"{[lig.label for lig in request.ligands]}: {exc}",
                    record=request.id,
                ) from exc
            atom_array = features.pop("atom_array")
            batch = collate(features, request.id, seed, torch.device(self.device))
            batch["atom_array"] = [atom_array]
            t1 = time.perf_counter()
            with torch.inference_mode(), self._autocast():
                batch, outputs = self.network(batch)
                self.forward_calls += 1
                confidence = get_confidence_scores(batch=batch, outputs=outputs, config=self.of3_config)
            t2 = time.perf_counter()
            samples = split_samples(confidence, outputs["atom_positions_predicted"], atom_array)
            used = {
                "num_recycles": int(shared.num_recycles),
                "num_samples": int(shared.diffusion.no_full_rollout_samples),
                "diffusion_steps": int(shared.diffusion.no_full_rollout_steps),
                "chunk_size": self.of3_config.settings.memory.eval.chunk_size,
            }
        best = max(range(len(samples)), key=lambda i: samples[i].ranking_score)
        structure = to_structure(
            self.name,
            request,
            atom_array,
            samples[best],
            {"seed": seed, "sample": best, **used, "msa_chains": [c.chain_id for c in request.proteins if c.msa]},
        )
        timings.update(featurize_s=t1 - t0, model_s=t2 - t1, output_s=time.perf_counter() - t2)
        structure.extra["timings"] = {k: round(v, 3) for k, v in timings.items()}
        return structure

    def _autocast(self) -> contextlib.AbstractContextManager:
        # bfloat16 = Lightning's "bf16-mixed": fp32 weights, bf16 matmuls; openfold3
        # keeps its sensitive parts (diffusion, confidences) in fp32 itself.
        if self.dtype == "bfloat16":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def close(self) -> None:
        self.network = None  # type: ignore[assignment]
        if str(self.device).startswith("cuda"):
            torch.cuda.empty_cache()
        self._cleanup()


@contextlib.contextmanager
def _config_overrides(overrides: list[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set config fields for one request (None = keep) and restore them afterwards."""
    saved = [(node, key, node[key]) for node, key, value in overrides if value is not None]
    try:
        for node, key, value in overrides:
            if value is not None:
                node[key] = value
        yield
    finally:
        for node, key, value in saved:
            node[key] = value


@contextlib.contextmanager
def _seeded(seed: int, device: str) -> Iterator[None]:
    """Seed python, numpy and torch for one request without changing the caller's RNG state."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    try:
        with torch.random.fork_rng(devices=devices):
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@contextlib.contextmanager
def _skip_random_init() -> Iterator[None]:
    """Skip openfold3's truncated-normal init while the network is built.

    The meta device makes the parameters free, but openfold3 draws the init values
    with scipy on the CPU first (minutes for the full model). Its inference runner
    skips the init the same way (``experiment_runner.skip_random_init``).
    """
    import openfold3.core.model.primitives.initialization as init

    original = init.trunc_normal_init_
    init.trunc_normal_init_ = lambda *args, **kwargs: None
    try:
        yield
    finally:
        init.trunc_normal_init_ = original


def _dtype_name(dtype: str | None, device: str) -> str:
    """float32 on CPU; float32 (openfold3's default) or bfloat16 on GPU; never float16."""
    resolved = resolve_dtype(dtype, device, default_gpu="float32")
    if resolved == torch.float16:
        raise ValueError("OpenFold-3 does not run in float16 (it overflows); use bfloat16 or float32")
    if resolved == torch.bfloat16 and not str(device).startswith("cuda"):
        raise ValueError("OpenFold-3 runs in float32 on CPU; bfloat16 is for GPUs")
    return "bfloat16" if resolved == torch.bfloat16 else "float32"


def load_openfold(
    spec: ModelSpec,
    path: Path,
    device: str = "cpu",
    dtype: str | None = None,
    *,
    model_update: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    num_threads: int | None = None,
    warm_up: bool = True,
) -> OpenFoldModel:
    """Load an OpenFold-3 checkpoint (the registry's loader for this family).

    Args:
        spec: the variant.
        path: the released EMA-only ``.pt`` or an openfold3 training checkpoint
            (whose config is then used; its EMA weights when it has them).
        device: ``"cpu"`` or ``"cuda[:N]"``.
        dtype: float32 (default everywhere) or, on GPU, bfloat16. float16 is refused.
        model_update: openfold3's runner-yaml ``model_update`` section
            (``{"presets": [...], "custom": {...}}``), applied to the config, e.g.
            for a checkpoint of another size.
        max_tokens: override the spec's request-size guard.
        num_threads: torch CPU threads (default: leave torch's setting).
        warm_up: read the CCD entries of the standard residues now (about 4 s),
            not in the first request.

    Raises:
        BackendUnavailableError: openfold3 is not installed.
        CheckpointError: unreadable file, wrong architecture or model version.
    """
    _require_openfold3()
    from openfold3.projects.of3_all_atom.model import OpenFold3

    from .checkpoint import load_into, read_checkpoint
    from .config import apply_model_update, default_config, prepare_for_inference, summary

    if num_threads:
        torch.set_num_threads(int(num_threads))
    dtype_name = _dtype_name(dtype, device)
    ckpt = read_checkpoint(Path(path))
    config = ckpt.config if ckpt.config is not None else default_config()
    config = prepare_for_inference(apply_model_update(config, model_update), device)
    with warnings.catch_warnings(), _skip_random_init(), torch.device("meta"):
        warnings.filterwarnings("ignore", message=_NOISE[0])
        network = OpenFold3(config)  # the checkpoint's tensors are assigned below
    load_into(network, ckpt, Path(path))
    network = network.to(device=torch.device(device), dtype=torch.float32).eval()
    arch = summary(config)
    if arch != {k: v for k, v in spec.config.items() if k in arch}:
        logger.warning("%s: loaded a checkpoint whose architecture differs from the published one: %s", spec.name, arch)
    model = OpenFoldModel(
        spec,
        network,
        config,
        device=str(device),
        dtype=dtype_name,
        config={**arch, "checkpoint_layout": ckpt.layout, "model_version": ckpt.version, "path": os.fspath(path)},
        max_tokens=max_tokens,
    )
    if warm_up:
        model.featurizer.warm_up()
    return model
