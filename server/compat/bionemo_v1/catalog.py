"""Which BioNeMo service v1 model names this server answers, with the variant behind each,
and the ones it does not host (answered with a clean error naming what it does)."""

from __future__ import annotations

from dataclasses import dataclass

from bionemo_lite.registry import get_spec


@dataclass(frozen=True)
class Hosted:
    """A BioNeMo service model served by one of our variants."""

    name: str  # the service's model name, as in its URL
    variant: str  # our registered variant that answers
    methods: tuple[str, ...]  # the client's methods that reach it
    path: str  # the route, under /bionemo/v1


HOSTED: tuple[Hosted, ...] = (
    Hosted("esm2-650m", "esm2_t33_650M_UR50D", ("esm2_sync",), "/protein-embedding/esm2-650m/embeddings"),
    Hosted("esm2-3b", "esm2_t36_3B_UR50D", ("esm2_sync",), "/protein-embedding/esm2-3b/embeddings"),
    Hosted("esm2-15b", "esm2_t48_15B_UR50D", ("esm2_sync",), "/protein-embedding/esm2-15b/embeddings"),
    # ESM-1nv is NVIDIA's retraining of ESM-1b; ESM-1b itself answers (the X-Served-By header says so).
    Hosted("esm1nv", "esm1b_t33_650M_UR50S", ("esm1nv_sync",), "/protein-embedding/esm1nv/embeddings"),
    Hosted("megamolbart", "megamolbart",
           ("megamolbart_embeddings_sync", "megamolbart_unguided_generate_sync", "megamolbart_unguided_generate_async",
            "guided generation (algorithm CMA-ES)"), "/molecule/megamolbart/{embeddings,generate}"),
    Hosted("esmfold", "esmfold_v1", ("esmfold_sync", "esmfold_async"), "/protein-structure/esmfold/predict-no-aln"),
    Hosted("openfold", "openbind-2025-06-30-174k", ("openfold_sync", "openfold_async"),
           "/protein-structure/openfold/predict"),
)
BY_NAME = {h.name: h for h in HOSTED}
ESM2_SIZES = {"650m": "esm2-650m", "3b": "esm2-3b", "15b": "esm2-15b"}

NOT_HOSTED: dict[str, str] = {
    "alphafold2": "AlphaFold2 is not served here; OpenFold answers /protein-structure/openfold/predict",
    "diffdock": "DiffDock (docking) is not served here",
    "protgpt2": "ProtGPT2 is not served here",
    "moflow": "MoFlow is not served here",
    "molmim": "MolMIM is not served here; MegaMolBART answers /molecule/megamolbart/* (and the NIM MolMIM "
              "routes under /nim/biology/nvidia/molmim)",
    "msa": "MSA search (jackhmmer) is not run here: this server searches no sequence database; send your own "
           "a3m files to openfold_sync(msas=...)",
    "uniprot": "UniProt look-ups are not offered: this server reaches no outside database",
    "pubchem": "PubChem look-ups are not offered: this server reaches no outside database",
}


def variant(name: str) -> str:
    """Our variant serving the service model `name` (which must be in `BY_NAME`)."""
    return BY_NAME[name].variant


def hosted_names() -> list[str]:
    return [h.name for h in HOSTED]


def entry(hosted: Hosted, weights_available: bool) -> dict[str, object]:
    """The `list_models` entry of one hosted model."""
    spec = get_spec(hosted.variant)
    return {"name": hosted.name, "served_by": hosted.variant, "family": spec.family, "methods": list(hosted.methods),
            "path": hosted.path, "weights_available": weights_available}
