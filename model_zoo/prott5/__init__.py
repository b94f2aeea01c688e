"""ProtT5 plugin: the encoder of Rostlab's ProtT5-XL-UniRef50 as a protein embedder.

Two variants share one architecture (T5-3B encoder: 24 layers, d_model 1024,
d_ff 16384, 32 heads of 128, ReLU feed-forward, 32 relative-position buckets):

- ``prot_t5_xl_uniref50``: the encoder of the full encoder-decoder checkpoint
  (fp32, 11.3 GB; the decoder is skipped when loading).
- ``prot_t5_xl_half_uniref50-enc``: the same encoder stored alone in float16
  (2.4 GB), which the authors recommend for embedding.

This module is plain data (no torch import) so that listing models stays
instant; the loader lives in `bionemo_lite.zoo.prott5.model`.

Length limit: T5 has relative positions (every distance beyond 128 shares the
last bucket), so no position table caps the input. What limits it is memory:
attention scores grow with L² (32 heads x 4,000² in fp16 is about 1 GB per
layer for one sequence). The default limit, `DEFAULT_MAX_LENGTH` = 4,000
residues, is the per-batch residue budget of upstream's own embedder
(ProtTrans ``prott5_embedder.py``, ``max_residues=4000``), covers all but a few
giant proteins (titin has 34,350) and fits the default token budget of one
batch. Raise it per model with ``load(..., max_length=N)`` or cut long inputs
with ``on_too_long="truncate"``.
"""

from __future__ import annotations

from bionemo_lite.spec import ModelSpec, WeightFile, WeightSource

FAMILY = "prott5"
LOADER = "bionemo_lite.zoo.prott5.model:load_prott5"
DEFAULT_MAX_LENGTH = 4000
POOLINGS = ("mean", "max", "per_residue")  # T5 has no BOS/CLS token

# The published architecture (config.json of both Hugging Face repositories).
PROT_T5_XL_CONFIG: dict = {
    "num_layers": 24,
    "d_model": 1024,
    "d_ff": 16384,
    "num_heads": 32,
    "d_kv": 128,
    "feed_forward_proj": "relu",
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "vocab_size": 128,
}
# shared embedding 128x1024 + 24 x (4 x 1024x4096 attention + 2 x 1024x16384 FF + 2 norms)
# + relative bias 32x32 + final norm; equal to T5EncoderModel's parameter count.
PROT_T5_XL_ENCODER_PARAMS = 1_208_141_824

LICENSE = (
    "ProtTrans code: MIT (agemagician/ProtTrans; AFL-3.0 in older releases); "
    "the Hugging Face model cards state no license for the weights: see the model card"
)

_HF = "https://huggingface.co"
# Revisions are pinned so that the published sha256 of each file stays true.
_FULL_REPO = "Rostlab/prot_t5_xl_uniref50"
_FULL_REV = "d604cdc190f7df5186404c8729934f0ee9a4b0e4"
_ENC_REPO = "Rostlab/prot_t5_xl_half_uniref50-enc"
_ENC_REV = "94a6abc029ae13029317b140b7424e012bf8dfbf"
_SPIECE_SHA256 = "74da7b4afcde53faa570114b530c726135bdfcdb813dec3abfb27f9d44db7324"


def _resolve(repo: str, revision: str, filename: str) -> str:
    return f"{_HF}/{repo}/resolve/{revision}/{filename}"


def _hf_source(repo: str, revision: str, weights: WeightFile, spiece_sha256: str | None) -> WeightSource:
    return WeightSource(
        format="huggingface",
        files=(
            weights,  # first: the file named when nothing is found
            WeightFile("config.json", _resolve(repo, revision, "config.json")),
            WeightFile("spiece.model", _resolve(repo, revision, "spiece.model"), sha256=spiece_sha256, required=False),
        ),
        entry=None,
        homepage=f"{_HF}/{repo}",
    )


def _variant(name: str, description: str, weights: tuple[WeightSource, ...]) -> ModelSpec:
    # Both variants are the same encoder; they differ in checkpoint and storage precision.
    return ModelSpec(
        name=name,
        family=FAMILY,
        verbs=frozenset({"embed"}),
        loader=LOADER,
        input_kind="protein",
        max_length=DEFAULT_MAX_LENGTH,
        config=PROT_T5_XL_CONFIG,
        poolings=POOLINGS,
        license=LICENSE,
        params=PROT_T5_XL_ENCODER_PARAMS,
        description=description,
        weights=weights,
    )


def specs() -> list[ModelSpec]:
    """The ProtT5 variants (entry point ``bionemo_lite.zoo.prott5:specs``)."""
    full = _variant(
        "prot_t5_xl_uniref50",
        "ProtT5-XL-UniRef50 encoder (from the full fp32 encoder-decoder checkpoint), 1024-d embeddings",
        (
            _hf_source(
                _FULL_REPO,
                _FULL_REV,
                WeightFile(
                    "pytorch_model.bin",
                    _resolve(_FULL_REPO, _FULL_REV, "pytorch_model.bin"),
                    sha256="c06141d42e93c12b5f6d95c701952156bd4079661f5f2d981d0d2036ba96dae9",
                ),
                _SPIECE_SHA256,
            ),
            # The safetensors conversion (Hugging Face bot, unmerged pull request 1): same
            # weights; listed so a cache folder holding model.safetensors is found too.
            _hf_source(
                _FULL_REPO,
                "refs%2Fpr%2F1",
                WeightFile("model.safetensors", _resolve(_FULL_REPO, "refs%2Fpr%2F1", "model.safetensors")),
                None,
            ),
        ),
    )
    half = _variant(
        "prot_t5_xl_half_uniref50-enc",
        "ProtT5-XL-UniRef50 encoder only, float16 weights (fp16 on GPU, fp32 on CPU), 1024-d embeddings",
        (
            _hf_source(
                _ENC_REPO,
                _ENC_REV,
                WeightFile(
                    "pytorch_model.bin",
                    _resolve(_ENC_REPO, _ENC_REV, "pytorch_model.bin"),
                    sha256="7f51ba885541c7dc569d46b796af57cc7a2ba7945107dced4f19d1b5ec091157",
                ),
                None,
            ),
        ),
    )
    return [full, half]
