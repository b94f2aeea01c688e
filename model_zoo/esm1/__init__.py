"""ESM-1 plugin: ESM-1b (Rives et al. 2021) and the five ESM-1v models with their ensemble (Meier et al. 2021).

This module only declares the variants (no torch import, so listing models is
instant). ESM-1b/1v share ESM-2's alphabet, transformer layers, heads and
scoring (`bionemo_lite.zoo.esm2`); they differ in learned absolute positions
(with fair-esm's padding-index offset), a LayerNorm on the embeddings
(``emb_layer_norm_before``) and no rotary embedding (`network.py`).
"""

from __future__ import annotations

from bionemo_lite.spec import ModelSpec, WeightFile, WeightSource
from bionemo_lite.zoo.esm2 import (
    FAIR_ESM_MODELS,
    FAIR_ESM_REGRESSION,
    HF_HUB,
    MAX_RESIDUES,
    SCORE_METHODS,
    VOCAB_SIZE,
    count_parameters,
)

FAMILY = "esm1"
LOADER = "bionemo_lite.zoo.esm1.loading:load_esm1"
ENSEMBLE_LOADER = "bionemo_lite.zoo.esm1.ensemble:load_esm1v_ensemble"
MAX_POSITIONS = 1024  # fair-esm's args.max_positions: 1022 residues + BOS + EOS
NUM_LAYERS, EMBED_DIM, ATTENTION_HEADS = 33, 1280, 20  # both ESM-1b and ESM-1v (fair-esm esm/pretrained.py)
ESM1B = "esm1b_t33_650M_UR50S"
ESM1V_MEMBERS: tuple[str, ...] = tuple(f"esm1v_t33_650M_UR90S_{i}" for i in range(1, 6))
ENSEMBLE = "esm1v_ensemble"
HF_FILES = ("config.json", "pytorch_model.bin")  # the facebook/esm1* repositories' weight file


def count_esm1_parameters(num_layers: int, embed_dim: int, attention_heads: int) -> int:
    """Parameters of an ESM-1b network of this shape: ESM-2's plus positions and the embedding LayerNorm.

    The contact head is counted for ESM-1v too: fair-esm builds it, only its weights are unpublished.
    """
    positions = (MAX_POSITIONS + 2) * embed_dim  # + padding index + 1 rows (fair-esm LearnedPositionalEmbedding)
    return count_parameters(num_layers, embed_dim, attention_heads) + positions + 2 * embed_dim


def _config() -> dict[str, object]:
    return {
        "num_layers": NUM_LAYERS,
        "embed_dim": EMBED_DIM,
        "attention_heads": ATTENTION_HEADS,
        "ffn_dim": 4 * EMBED_DIM,
        "vocab_size": VOCAB_SIZE,
        "max_positions": MAX_POSITIONS,
        "token_dropout": True,
        "position_embedding": "learned",
        "emb_layer_norm_before": True,
    }


def _fair_file(name: str) -> WeightFile:
    return WeightFile(f"{name}.pt", f"{FAIR_ESM_MODELS}/{name}.pt")


def _hf_files(name: str, folder: str = "") -> tuple[WeightFile, ...]:
    return tuple(WeightFile(f"{folder}{f}", f"{HF_HUB}/facebook/{name}/resolve/main/{f}") for f in HF_FILES)


def _weight_sources(name: str, contacts: bool) -> tuple[WeightSource, ...]:
    # fair-esm ships contact regression for ESM-1b only (esm/pretrained.py: _has_regression_weights).
    regression_file = f"{name}-contact-regression.pt"
    regression = (
        (WeightFile(regression_file, f"{FAIR_ESM_REGRESSION}/{regression_file}", required=False),) if contacts else ()
    )
    fair = WeightSource(
        format="fair-esm",
        files=(_fair_file(name), *regression),
        entry=f"{name}.pt",
        homepage="https://github.com/facebookresearch/esm#available-models",
    )
    hub = WeightSource(format="huggingface", files=_hf_files(name), entry=None, homepage=f"{HF_HUB}/facebook/{name}")
    return (fair, hub)


def _spec(name: str, description: str, contacts: bool) -> ModelSpec:
    return ModelSpec(
        name=name,
        family=FAMILY,
        verbs=frozenset({"embed", "score", "contacts"} if contacts else {"embed", "score"}),
        loader=LOADER,
        input_kind="protein",
        max_length=MAX_RESIDUES,
        numerics=("fast", "reference"),  # as ESM-2: fast (fused SDPA) is the default
        poolings=("mean", "max", "bos", "per_residue"),
        score_methods=SCORE_METHODS,
        config=_config(),
        license="MIT",
        weights=_weight_sources(name, contacts),
        params=count_esm1_parameters(NUM_LAYERS, EMBED_DIM, ATTENTION_HEADS),
        description=description,
    )


def _ensemble_spec() -> ModelSpec:
    fair = WeightSource(
        format="fair-esm",
        files=tuple(_fair_file(m) for m in ESM1V_MEMBERS),
        entry=None,  # the folder holding the five .pt files
        homepage="https://github.com/facebookresearch/esm/tree/main/examples/variant-prediction",
    )
    hub = WeightSource(
        format="huggingface",
        files=tuple(f for m in ESM1V_MEMBERS for f in _hf_files(m, f"{m}/")),
        entry=None,  # the folder holding one Hugging Face folder per member
        homepage=f"{HF_HUB}/facebook/{ESM1V_MEMBERS[0]}",
    )
    member = count_esm1_parameters(NUM_LAYERS, EMBED_DIM, ATTENTION_HEADS)
    return ModelSpec(
        name=ENSEMBLE,
        family=FAMILY,
        verbs=frozenset({"score"}),
        loader=ENSEMBLE_LOADER,
        input_kind="protein",
        max_length=MAX_RESIDUES,
        numerics=("fast", "reference"),
        score_methods=SCORE_METHODS,
        config={**_config(), "members": ESM1V_MEMBERS},
        license="MIT",
        weights=(fair, hub),
        params=len(ESM1V_MEMBERS) * member,
        description=(
            "ESM-1v ensemble: score only, the mean of the five ESM-1v models' scores (zero-shot variant "
            "effects, Meier et al. 2021); weights: a folder with the five members' .pt files or HF folders"
        ),
    )


def specs() -> list[ModelSpec]:
    """ESM-1b, the five ESM-1v models and their ensemble (entry point ``bionemo_lite.models``)."""
    members = [
        _spec(m, f"ESM-1v protein language model {i} of 5, 33 layers, dim 1280 (UniRef90)", contacts=False)
        for i, m in enumerate(ESM1V_MEMBERS, start=1)
    ]
    esm1b = _spec(ESM1B, "ESM-1b protein language model, 33 layers, dim 1280 (UniRef50)", contacts=True)
    return [esm1b, *members, _ensemble_spec()]
