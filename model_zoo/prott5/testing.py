"""Tiny random-weight ProtT5 checkpoints in Rostlab's published layouts, for tests and demos.

Two layouts, as the two published variants are stored: the full
encoder-decoder saved with ``save_pretrained`` (config.json +
model.safetensors, as ``Rostlab/prot_t5_xl_uniref50``) and the encoder alone in
float16 (config.json + pytorch_model.bin, as
``Rostlab/prot_t5_xl_half_uniref50-enc``). Either may carry a real
sentencepiece ``spiece.model``; without one the plugin's built-in vocabulary is used.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch

from .tokenizer import RESIDUE_ORDER

FULL = "prot_t5_xl_uniref50"
HALF_ENCODER = "prot_t5_xl_half_uniref50-enc"
TINY_CONFIG: dict[str, Any] = dict(
    d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8, vocab_size=128,
    relative_attention_num_buckets=32, feed_forward_proj="relu",
)
"""transformers ``T5Config`` arguments of the tiny shape (ProtT5's vocabulary fits in 128 ids)."""


def tiny_config(**overrides: Any) -> Any:
    """A ``transformers.T5Config`` of `TINY_CONFIG` with `overrides`."""
    import transformers

    return transformers.T5Config(**(TINY_CONFIG | overrides))


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (norm weights around 1), so no mapping bug hides behind an init value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "layer_norm" in name:
                p.copy_(1 + 0.3 * noise)
            else:
                p.copy_((0.5 if "relative_attention_bias" in name else 0.2) * noise)
    return model.eval()


def train_spiece(folder: str | Path, order: str = RESIDUE_ORDER) -> Path:
    """A real sentencepiece word model whose residue pieces get ids 3.. in `order`; returns ``spiece.model``.

    Word-model pieces are ranked by frequency, so each letter appears fewer
    times than the one before it.
    """
    import sentencepiece as spm

    folder = Path(folder)
    words: list[str] = []
    for rank, aa in enumerate(order):
        words += [aa] * (1000 - 30 * rank)
    random.Random(0).shuffle(words)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(" ".join(words[i : i + 50]) for i in range(0, len(words), 50)))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "spiece"), model_type="word", vocab_size=3 + len(order),
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        character_coverage=1.0, minloglevel=2,
    )
    corpus.unlink()
    (folder / "spiece.vocab").unlink()
    return folder / "spiece.model"


def write_full(folder: str | Path, seed: int = 1, spiece: str | Path | None = None) -> Path:
    """A tiny ``T5ForConditionalGeneration`` saved with ``save_pretrained`` (+ `spiece` copied in); returns `folder`."""
    import transformers

    folder = Path(folder)
    randomize(transformers.T5ForConditionalGeneration(tiny_config()), seed).save_pretrained(folder)
    if spiece is not None:
        shutil.copy(spiece, folder / "spiece.model")
    return folder


def write_half_encoder(folder: str | Path, seed: int = 2, spiece: str | Path | None = None) -> Path:
    """A tiny ``T5EncoderModel`` in float16 as ``pytorch_model.bin`` + config.json (+ `spiece`); returns `folder`."""
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = randomize(transformers.T5EncoderModel(tiny_config()), seed).half()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    model.config.save_pretrained(folder)
    if spiece is not None:
        shutil.copy(spiece, folder / "spiece.model")
    return folder


def tiny_checkpoint(folder: str | Path, name: str = FULL) -> Path:
    """A tiny random ProtT5 directory in the layout variant `name` is published in (built-in vocabulary).

    It is not the published size, so loading it by name warns.
    """
    folder = Path(folder)
    if name == HALF_ENCODER:
        return write_half_encoder(folder / name)
    return write_full(folder / name)
