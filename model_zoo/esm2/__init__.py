"""ESM-2 plugin: the six published ESM-2 protein language models (Lin et al. 2023).

This module only declares the variants (no torch import, so listing models is
instant); the network, checkpoint readers and verbs live in the submodules
that `load_esm2` imports.
"""

from __future__ import annotations

from bionemo_lite.spec import ModelSpec, WeightFile, WeightSource

SCORE_METHODS: tuple[str, ...] = ("pll", "masked_marginals", "wt_marginals")  # pll: the default

FAMILY = "esm2"
LOADER = "bionemo_lite.zoo.esm2.loading:load_esm2"
VOCAB_SIZE = 33
MAX_POSITIONS = 1026  # the published config value
MAX_RESIDUES = 1022  # fair-esm's limit (scripts/extract.py): 1022 residues + BOS + EOS were trained
FAIR_ESM_MODELS = "https://dl.fbaipublicfiles.com/fair-esm/models"
FAIR_ESM_REGRESSION = "https://dl.fbaipublicfiles.com/fair-esm/regression"
HF_HUB = "https://huggingface.co"

# name, layers, embedding dim, attention heads (fair-esm esm/pretrained.py; 15B heads per its HF config).
VARIANTS: tuple[tuple[str, int, int, int], ...] = (
    ("esm2_t6_8M_UR50D", 6, 320, 20),
    ("esm2_t12_35M_UR50D", 12, 480, 20),
    ("esm2_t30_150M_UR50D", 30, 640, 20),
    ("esm2_t33_650M_UR50D", 33, 1280, 20),
    ("esm2_t36_3B_UR50D", 36, 2560, 40),
    ("esm2_t48_15B_UR50D", 48, 5120, 40),
)


def count_parameters(num_layers: int, embed_dim: int, attention_heads: int, vocab_size: int = VOCAB_SIZE) -> int:
    """Parameters of an ESM-2 network of this shape (LM-head weight tied to the token embeddings)."""
    d = embed_dim
    attention = 4 * (d * d + d)
    feed_forward = (d * 4 * d + 4 * d) + (4 * d * d + d)
    layer_norms = 2 * 2 * d
    lm_head = (d * d + d) + 2 * d + vocab_size
    contact_head = num_layers * attention_heads + 1
    return vocab_size * d + num_layers * (attention + feed_forward + layer_norms) + 2 * d + lm_head + contact_head


def _weight_sources(name: str) -> tuple[WeightSource, ...]:
    fair = WeightSource(
        format="fair-esm",
        files=(
            WeightFile(f"{name}.pt", f"{FAIR_ESM_MODELS}/{name}.pt"),
            WeightFile(
                f"{name}-contact-regression.pt", f"{FAIR_ESM_REGRESSION}/{name}-contact-regression.pt", required=False
            ),
        ),
        entry=f"{name}.pt",
        homepage="https://github.com/facebookresearch/esm#available-models",
    )
    hub = WeightSource(
        format="huggingface",
        files=tuple(
            WeightFile(f, f"{HF_HUB}/facebook/{name}/resolve/main/{f}") for f in ("config.json", "model.safetensors")
        ),
        entry=None,
        homepage=f"{HF_HUB}/facebook/{name}",
    )
    return (fair, hub)


def _spec(name: str, num_layers: int, embed_dim: int, attention_heads: int) -> ModelSpec:
    params = count_parameters(num_layers, embed_dim, attention_heads)
    return ModelSpec(
        name=name,
        family=FAMILY,
        verbs=frozenset({"embed", "score", "generate", "contacts"}),
        loader=LOADER,
        input_kind="protein",
        max_length=MAX_RESIDUES,
        numerics=("fast", "reference"),  # fast (fused SDPA) is the default
        poolings=("mean", "max", "bos", "per_residue"),
        score_methods=SCORE_METHODS,
        config={
            "num_layers": num_layers,
            "embed_dim": embed_dim,
            "attention_heads": attention_heads,
            "ffn_dim": 4 * embed_dim,
            "vocab_size": VOCAB_SIZE,
            "max_positions": MAX_POSITIONS,
            "token_dropout": True,
        },
        license="MIT",
        weights=_weight_sources(name),
        params=params,
        description=f"ESM-2 protein language model, {num_layers} layers, dim {embed_dim} (UniRef50)",
    )


def specs() -> list[ModelSpec]:
    """The six ESM-2 variants, smallest first (entry point ``bionemo_lite.models``)."""
    return [_spec(*row) for row in VARIANTS]
