"""ESMFold plugin: single-sequence structure prediction on an ESM-2 3B stem (Lin et al. 2023).

Declares the variant only (no torch import, so listing models stays instant);
`bionemo_lite.zoo.esmfold.model.load_esmfold` loads it and runs transformers'
``EsmForProteinFolding``. fair-esm's own ``esmfold_3B_v1.pt`` (with
``esm2_t36_3B_UR50D.pt`` for its stem) converts to the same Hugging Face
layout with `bionemo_lite.zoo.esmfold.convert.convert_fair_esmfold`.

Length limit: ``max_length`` counts the residues of all chains (the 25-residue
linkers between chains are not counted). It is 1022, the window ESM-2 was
trained on (1022 residues + BOS + EOS): ESMFold itself has no hard limit, but
beyond it the stem leaves its trained range and folding memory grows as L^2
to L^3. ``bionemo_lite.load("esmfold_v1", max_length=N)`` raises it for
deliberate long folds (use ``chunk_size`` then).
"""

from __future__ import annotations

from bionemo_lite.spec import ModelSpec, WeightFile, WeightSource

from .config import PUBLISHED

FAMILY = "esmfold"
LOADER = "bionemo_lite.zoo.esmfold.model:load_esmfold"
MAX_RESIDUES = 1022
HF_REPO = "https://huggingface.co/facebook/esmfold_v1"
FAIR_ESM_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/esmfold_3B_v1.pt"
# Parameters of EsmForProteinFolding at the published shape (counted on the meta device).
PARAMS = 3_525_038_915


def specs() -> list[ModelSpec]:
    """The ESMFold variants (entry point ``bionemo_lite.models``)."""
    hub = WeightSource(
        format="huggingface",
        files=(
            WeightFile("config.json", f"{HF_REPO}/resolve/main/config.json"),
            WeightFile("pytorch_model.bin", f"{HF_REPO}/resolve/main/pytorch_model.bin"),
        ),
        entry=None,
        homepage=HF_REPO,
    )
    return [
        ModelSpec(
            name="esmfold_v1",
            family=FAMILY,
            verbs=frozenset({"fold"}),
            loader=LOADER,
            input_kind="protein",
            max_length=MAX_RESIDUES,
            config={**PUBLISHED, "chain_linker": "G" * 25, "residue_index_offset": 512},
            license="MIT",
            weights=(hub,),
            params=PARAMS,
            description=(
                "ESMFold v1: structure from a single sequence (ESM-2 3B stem + 48 folding blocks); "
                "complexes as chains joined by ':'. Weights: Hugging Face facebook/esmfold_v1; fair-esm's "
                f"esmfold_3B_v1.pt ({FAIR_ESM_URL}) converts with `python -m bionemo_lite.zoo.esmfold.convert`."
            ),
        )
    ]
