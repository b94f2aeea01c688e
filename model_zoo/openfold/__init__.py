"""OpenFold-3 plugin: the official ``openfold3`` package behind the ``fold`` verb.

OpenFold-3 (AlQuraishi lab / OpenFold consortium, Apache-2.0) is an AlphaFold-3
reproduction: protein chains, small-molecule ligands (SMILES or CCD codes) and
optional MSAs in, an all-atom structure with pLDDT, PAE, pTM and ipTM out.

This module only declares the variants; it imports neither torch nor
``openfold3`` (an optional extra: ``pip install bionemo-lite[openfold]``), so
listing models stays instant. `bionemo_lite.zoo.openfold.model.load_openfold` builds
the network once; every ``fold`` then runs in-process and offline: no ColabFold
MSA server, no template search, no download of any kind.
"""

from __future__ import annotations

from bionemo_lite.spec import ModelSpec, WeightFile, WeightSource

FAMILY = "openfold"
LOADER = "bionemo_lite.zoo.openfold.model:load_openfold"

# openfold3 0.5.0, entry_points/parameters.py: the public S3 bucket and key prefix its
# own `setup_openfold` downloads from (s3://openfold3-data/openfold3-parameters/<file>).
S3_BUCKET_URL = "https://openfold3-data.s3.amazonaws.com/openfold3-parameters"
PARAMETERS_DOCS = "https://openfold-3.readthedocs.io/en/latest/parameters_reference.html"

MAX_TOKENS = 5000
"""Largest input accepted, in AlphaFold-3 tokens: one per residue plus one per ligand
heavy atom. Not an architectural limit (relative positions are clipped at 32, nothing
is learned per position): it is a guard so that a request cannot ask for more memory
than one 80 GB GPU holds (pair activations grow with tokens squared). On CPU only short
inputs are practical."""

# Architecture of the published checkpoints: openfold3's default model config
# (projects/of3_all_atom/config/model_config.py), the one its inference runner builds.
PUBLISHED_CONFIG: dict[str, object] = {
    "c_s": 384,
    "c_z": 128,
    "c_m": 64,
    "c_t": 64,
    "c_atom": 128,
    "c_atom_pair": 16,
    "c_token_embedder": 384,
    "c_token_diffusion": 768,
    "pairformer_blocks": 48,
    "msa_module_blocks": 4,
    "template_pair_blocks": 2,
    "diffusion_transformer_blocks": 24,
    "confidence_pairformer_blocks": 4,
    "num_recycles": 3,
    "diffusion_samples": 5,
    "diffusion_steps": 200,
    "model_version": "2.0.0",
}
PUBLISHED_PARAMS = 368_293_788  # counted from openfold3 0.5.0's default config

# name (openfold3's OPENFOLD_MODEL_CHECKPOINT_REGISTRY key), file, description.
# The older "openfold3-p2-145k"/"-p2-155k" checkpoints are marked legacy there (only
# for openfold3 < 0.4.4; the 0.5.0 architecture changed), so they are not offered.
VARIANTS: tuple[tuple[str, str, str], ...] = (
    (
        "openbind-2025-06-30-174k",
        "of3-ob-2025-06-30-174k.pt",
        "OpenFold-3 (v0.5.0 OpenBind release, 174k steps): proteins, ligands, MSAs -> all-atom structure",
    ),
)


def _spec(name: str, filename: str, description: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        family=FAMILY,
        verbs=frozenset({"fold"}),
        loader=LOADER,
        input_kind="protein",
        max_length=MAX_TOKENS,
        config=PUBLISHED_CONFIG,
        license="Apache-2.0",
        weights=(
            WeightSource(
                # The released file is openfold3's EMA-only state dict (what its
                # scripts/dev/convert_ckpt_to_ema_only.py writes); no sha256 is published,
                # openfold3 itself compares an S3 CRC64 checksum.
                format="openfold3",
                files=(WeightFile(filename, f"{S3_BUCKET_URL}/{filename}"),),
                entry=filename,
                homepage=PARAMETERS_DOCS,
            ),
        ),
        params=PUBLISHED_PARAMS,
        description=description,
    )


def specs() -> list[ModelSpec]:
    """The OpenFold-3 variants (entry point ``bionemo_lite.models: openfold``)."""
    return [_spec(*v) for v in VARIANTS]
