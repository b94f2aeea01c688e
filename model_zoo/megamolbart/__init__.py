"""MegaMolBART plugin: a BART-style SMILES encoder-decoder (NVIDIA, NeMo/Megatron layout).

This module only declares the variant (no torch import, so listing models is
instant). The network, the `.nemo` and safetensors readers, the tokenizer and
the verbs live in the submodules that `load_megamolbart` imports.
"""

from __future__ import annotations

from bionemo_lite.spec import ModelSpec, WeightFile, WeightSource

FAMILY = "megamolbart"
LOADER = "bionemo_lite.zoo.megamolbart.model:load_megamolbart"
NGC_MODEL_PAGE = "https://catalog.ngc.nvidia.com/orgs/nvidia/teams/clara/models/megamolbart_0_2"
NGC_FILES = "https://api.ngc.nvidia.com/v2/models/nvidia/clara/megamolbart_0_2/versions/0.2.0/files"
NEMO_FILENAME = "megamolbart_0_2_0.nemo"

# The published "small" shape (MegaMolBART/BioNeMo configs: 6 layers, hidden 512,
# 8 heads, FFN 4x, 512 positions; vocabulary of 523 tokens padded to a multiple
# of 128). Docs elsewhere quote 8 layers / 256 / 4 heads: the loader therefore
# never trusts this card and reads the shape from the checkpoint's
# model_config.yaml and tensor shapes.
PUBLISHED_CONFIG: dict = {
    "num_layers": 6,
    "decoder_num_layers": 6,
    "hidden_size": 512,
    "ffn_hidden_size": 2048,
    "num_attention_heads": 8,
    "max_position_embeddings": 512,
    "vocab_size": 523,
    "padded_vocab_size": 640,
    "position_embedding_type": "learned_absolute",
    "transformer_block_type": "pre_ln",
    "activation": "gelu",
    "share_token_embeddings": True,
}
MAX_TOKENS = 512
SCORE_METHODS: tuple[str, ...] = ("loglik", "loglik_per_token")  # loglik: the default
POOLINGS: tuple[str, ...] = ("mean", "per_token", "per_residue")  # per_residue: the core's name for per_token


def count_parameters(
    num_layers: int = 6,
    hidden_size: int = 512,
    ffn_hidden_size: int = 2048,
    padded_vocab_size: int = 640,
    max_position_embeddings: int = 512,
    decoder_num_layers: int | None = None,
    tied_head: bool = True,
) -> int:
    """Parameters of a MegaMolBART network of this shape (shared encoder/decoder embeddings)."""
    h, f = hidden_size, ffn_hidden_size
    norm = 2 * h
    self_attention = (3 * h * h + 3 * h) + (h * h + h)
    cross_attention = (h * h + h) + (2 * h * h + 2 * h) + (h * h + h)
    mlp = (f * h + f) + (h * f + h)
    encoder = num_layers * (2 * norm + self_attention + mlp) + norm
    dec_layers = num_layers if decoder_num_layers is None else decoder_num_layers
    decoder = dec_layers * (3 * norm + self_attention + cross_attention + mlp) + norm
    embeddings = padded_vocab_size * h + max_position_embeddings * h
    head = padded_vocab_size if tied_head else padded_vocab_size * h
    return embeddings + encoder + decoder + head


def specs() -> list[ModelSpec]:
    """The MegaMolBART variants this plugin registers."""
    nemo = WeightSource(
        format="nemo",
        files=(WeightFile(NEMO_FILENAME, f"{NGC_FILES}/{NEMO_FILENAME}"),),
        entry=NEMO_FILENAME,
        homepage=(
            f"NGC model 'nvidia/clara/megamolbart_0_2' version 0.2.0 ({NGC_MODEL_PAGE}; NGC sign-in may be "
            "needed; `ngc registry model download-version nvidia/clara/megamolbart_0_2:0.2.0`)"
        ),
    )
    return [
        ModelSpec(
            name="megamolbart",
            family=FAMILY,
            verbs=frozenset({"embed", "decode", "generate", "score"}),
            loader=LOADER,
            input_kind="smiles",
            max_length=MAX_TOKENS,
            config=PUBLISHED_CONFIG,
            poolings=POOLINGS,
            score_methods=SCORE_METHODS,
            license="Apache-2.0",
            weights=(nemo,),
            params=count_parameters(),
            description=(
                "MegaMolBART: BART encoder-decoder over SMILES (ZINC-15), embeddings, decoding, sampling "
                "around seed molecules and SMILES log-likelihood; shape read from the checkpoint"
            ),
        )
    ]
