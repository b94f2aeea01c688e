"""MegaMolBART test data: drug SMILES, NeMo-layout random checkpoints and a reference forward.

No trained MegaMolBART weights can be downloaded here, so:

* `write_random_nemo` writes a ``.nemo`` archive the way NeMo lays one out
  (tar members prefixed with ``./``, ``model_config.yaml``,
  ``model_weights.ckpt`` with NeMo's parameter names, hashed tokenizer file
  names), with random weights built here from the shapes alone;
* `reference_forward` computes what NeMo's Megatron encoder-decoder computes
  from such a state dict, written out step by step from the NeMo source
  (fused projections viewed as ``[seq, batch, heads, parts * head_dim]``, softmax
  attention with additive masks) and independent of the plugin's network;
* the trained-model tests train the tiny model of `bionemo_lite.zoo.megamolbart.testing`
  on `DRUG_SMILES`.
"""

from __future__ import annotations

import io
import math
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

# Well-known drugs (PubChem isomeric/canonical SMILES, written by hand).
DRUG_SMILES: dict[str, str] = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "naproxen": "COc1ccc2cc(ccc2c1)C(C)C(=O)O",
    "nicotine": "CN1CCCC1c1cccnc1",
    "metformin": "CN(C)C(=N)NC(=N)N",
    "salicylic_acid": "OC(=O)c1ccccc1O",
    "benzocaine": "CCOC(=O)c1ccc(N)cc1",
    "lidocaine": "CCN(CC)CC(=O)Nc1c(C)cccc1C",
    "diazepam": "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",
    "fluoxetine": "CNCCC(Oc1ccc(cc1)C(F)(F)F)c1ccccc1",
    "diphenhydramine": "CN(C)CCOC(c1ccccc1)c1ccccc1",
    "phenobarbital": "CCC1(c2ccccc2)C(=O)NC(=O)NC1=O",
    "theophylline": "Cn1c2c(c(=O)n(C)c1=O)[nH]cn2",
    "dopamine": "NCCc1ccc(O)c(O)c1",
    "serotonin": "NCCc1c[nH]c2ccc(O)cc12",
    "epinephrine": "CNC[C@H](O)c1ccc(O)c(O)c1",
    "amphetamine": "CC(N)Cc1ccccc1",
    "phenacetin": "CCOc1ccc(NC(C)=O)cc1",
    "procaine": "CCN(CC)CCOC(=O)c1ccc(N)cc1",
    "ketoprofen": "CC(C(=O)O)c1cccc(c1)C(=O)c1ccccc1",
    "diclofenac": "OC(=O)Cc1ccccc1Nc1c(Cl)cccc1Cl",
    "indomethacin": "COc1ccc2c(c1)c(CC(=O)O)c(C)n2C(=O)c1ccc(Cl)cc1",
    "propranolol": "CC(C)NCC(O)COc1cccc2ccccc12",
    "atenolol": "CC(C)NCC(O)COc1ccc(CC(N)=O)cc1",
    "captopril": "C[C@H](CS)C(=O)N1CCC[C@H]1C(=O)O",
    "chlorpromazine": "CN(C)CCCN1c2ccccc2Sc2ccc(Cl)cc21",
    "haloperidol": "OC1(CCN(CCCC(=O)c2ccc(F)cc2)CC1)c1ccc(Cl)cc1",
    "carbamazepine": "NC(=O)N1c2ccccc2C=Cc2ccccc21",
    "sulfamethoxazole": "Cc1cc(NS(=O)(=O)c2ccc(N)cc2)no1",
    "trimethoprim": "COc1cc(Cc2cnc(N)nc2N)cc(OC)c1OC",
    "isoniazid": "NNC(=O)c1ccncc1",
    "pyrazinamide": "NC(=O)c1cnccn1",
    "metronidazole": "Cc1ncc([N+](=O)[O-])n1CCO",
    "acetazolamide": "CC(=O)Nc1nnc(s1)S(N)(=O)=O",
    "furosemide": "NS(=O)(=O)c1cc(C(=O)O)c(NCc2ccco2)cc1Cl",
    "warfarin": "CC(=O)CC(c1ccccc1)c1c(O)c2ccccc2oc1=O",
    "vanillin": "COc1cc(C=O)ccc1O",
    "menthol": "CC(C)C1CCC(C)CC1O",
}

# How the trained-model tests (conftest's `trained`) and benchmarks/guided_generation.py train the tiny model.
# float64: the float32 weights it ends with are then the same on every CPU (see training.py), so the tests
# that check what the model learned (guided search beating unguided sampling) see the same model everywhere.
TINY_TRAINING: dict = {
    "steps": 400, "batch_size": 40, "lr": 5e-3, "warmup_steps": 30, "target_accuracy": 0.95, "eval_every": 25,
    "seed": 0, "dtype": "float64",
}


def train_tiny_megamolbart():
    """The tiny MegaMolBART trained as a SMILES autoencoder on `DRUG_SMILES`: ``(model, TrainingReport)``."""
    from bionemo_lite.zoo.megamolbart.model import MegaMolBARTModel
    from bionemo_lite.zoo.megamolbart.testing import TINY_CONFIG
    from bionemo_lite.zoo.megamolbart.training import train_autoencoder

    model = MegaMolBARTModel.from_config(TINY_CONFIG, seed=0)
    report = train_autoencoder(model, list(DRUG_SMILES.values()), **TINY_TRAINING)
    return model, report


# SMILES in the style of the unparsable rows of BBBP: unclosed rings, bad aromaticity, bad valence.
UNPARSABLE_SMILES: dict[str, str] = {
    "unclosed_ring": "C1CC",
    "open_aromatic": "c1ccc",
    "five_aromatic_carbons": "c1cccc1",
    "pentavalent_carbon": "CC(C)(C)(C)(C)C",
}

# A small vocabulary in the megamolbart.vocab layout, in an order of its own
# (so a loader that ignored the checkpoint's file would get the ids wrong).
SMALL_CHEM_TOKENS = [
    "c", "C", ")", "(", "O", "1", "=", "N", "2", "n", "3", "F", "Cl", "[nH]", "#", "[C@H]", "[C@@H]", "4",
    "o", "s", "[N+]", "[O-]", "/", "\\",
]


def small_vocabulary() -> list[str]:
    return (
        ["<PAD>", "?", "^", "&", "<MASK>", "<SEP>"]
        + [f"<PROP_{i}>" for i in range(266)]
        + SMALL_CHEM_TOKENS
    )


@dataclass
class NemoLayout:
    """How a test `.nemo` is written.

    ``flat=True`` mimics BioNeMo v1's MegaMolBART config (shape keys at the top,
    ``bias_gelu_fusion``, separate output layer without bias); ``flat=False``
    NeMo's ``encoder:``/``decoder:`` sections with a tied, biased output layer.
    """

    flat: bool = True
    hidden: int = 32
    heads: int = 4
    ffn: int = 64
    enc_layers: int = 2
    dec_layers: int = 2
    positions: int = 48
    tied_head: bool = False
    tanh_gelu: bool = True
    vocab: list[str] = field(default_factory=small_vocabulary)
    pad_to: int = 128
    seed: int = 0

    @property
    def padded_vocab(self) -> int:
        return int(math.ceil(len(self.vocab) / self.pad_to) * self.pad_to)


ENC = "enc_dec_model.enc_dec_model.encoder.model."
DEC = "enc_dec_model.enc_dec_model.decoder.model."


def random_nemo_state(layout: NemoLayout) -> dict[str, torch.Tensor]:
    """Random weights under NeMo's names (every tensor random: no zero bias hides a bug)."""
    g = torch.Generator().manual_seed(layout.seed)
    h, f, v, p = layout.hidden, layout.ffn, layout.padded_vocab, layout.positions

    def w(out_dim: int, in_dim: int) -> torch.Tensor:
        return torch.randn(out_dim, in_dim, generator=g) / math.sqrt(in_dim)

    def b(n: int) -> torch.Tensor:
        return 0.1 * torch.randn(n, generator=g)

    def ln(prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1.0 + 0.1 * torch.randn(h, generator=g), f"{prefix}.bias": b(h)}

    sd: dict[str, torch.Tensor] = {
        "enc_dec_model.encoder_embedding.word_embeddings.weight": torch.randn(v, h, generator=g),
        "enc_dec_model.encoder_embedding.position_embeddings.weight": 0.5 * torch.randn(p, h, generator=g),
    }
    # PP=1 NeMo shares the module: its state dict carries the same tensors under both names.
    sd["enc_dec_model.decoder_embedding.word_embeddings.weight"] = sd[
        "enc_dec_model.encoder_embedding.word_embeddings.weight"].clone()
    sd["enc_dec_model.decoder_embedding.position_embeddings.weight"] = sd[
        "enc_dec_model.encoder_embedding.position_embeddings.weight"].clone()
    for prefix, n_layers, decoder in ((ENC, layout.enc_layers, False), (DEC, layout.dec_layers, True)):
        for i in range(n_layers):
            lp = f"{prefix}layers.{i}."
            sd.update(ln(lp + "input_layernorm"))
            sd[lp + "self_attention.query_key_value.weight"] = w(3 * h, h)
            sd[lp + "self_attention.query_key_value.bias"] = b(3 * h)
            sd[lp + "self_attention.dense.weight"] = w(h, h)
            sd[lp + "self_attention.dense.bias"] = b(h)
            sd.update(ln(lp + "post_attention_layernorm"))
            if decoder:
                sd[lp + "inter_attention.query.weight"] = w(h, h)
                sd[lp + "inter_attention.query.bias"] = b(h)
                sd[lp + "inter_attention.key_value.weight"] = w(2 * h, h)
                sd[lp + "inter_attention.key_value.bias"] = b(2 * h)
                sd[lp + "inter_attention.dense.weight"] = w(h, h)
                sd[lp + "inter_attention.dense.bias"] = b(h)
                sd.update(ln(lp + "post_inter_attention_layernorm"))
            sd[lp + "mlp.dense_h_to_4h.weight"] = w(f, h)
            sd[lp + "mlp.dense_h_to_4h.bias"] = b(f)
            sd[lp + "mlp.dense_4h_to_h.weight"] = w(h, f)
            sd[lp + "mlp.dense_4h_to_h.bias"] = b(h)
        sd.update(ln(prefix + "final_layernorm"))
    if layout.tied_head:
        sd["enc_dec_model.tokens_head.bias"] = b(v)
    else:
        sd["enc_dec_model.tokens_head.weight"] = w(v, h)
    return sd


def nemo_yaml(layout: NemoLayout, vocab_member: str, regex_member: str) -> dict:
    """A model_config.yaml as NeMo/BioNeMo wrote them (unused training keys included)."""
    tokenizer = {
        "library": "regex",
        "type": None,
        "model": f"nemo:{regex_member}",
        "vocab_file": f"nemo:{vocab_member}",
        "merge_file": None,
    }
    common = {
        "micro_batch_size": 32,
        "tensor_model_parallel_size": 1,
        "pipeline_model_parallel_size": 1,
        "make_vocab_size_divisible_by": layout.pad_to,
        "seq_length": layout.positions,
        "max_position_embeddings": layout.positions,
        "share_token_embeddings": True,
        "share_decoder_tokens_head_embeddings": layout.tied_head,
        "precision": 16,
        "tokenizer": tokenizer,
        "optim": {"name": "fused_adam", "lr": 1.0, "sched": {"name": "NoamAnnealing", "warmup_steps": 8000}},
        "target": "bionemo.model.molecule.megamolbart.megamolbart_model.MegaMolBARTModel",
        "nemo_version": "1.20.0",
    }
    if layout.flat:
        return {
            "name": "MegaMolBART-united-token_head",
            **common,
            "num_layers": layout.enc_layers,
            "hidden_size": layout.hidden,
            "ffn_hidden_size": layout.ffn,
            "num_attention_heads": layout.heads,
            "init_method_std": 0.02,
            "hidden_dropout": 0.1,
            "attention_dropout": 0.1,
            "position_embedding_type": "learned_absolute",
            "kv_channels": None,
            "apply_query_key_layer_scaling": True,
            "layernorm_epsilon": 1e-5,
            "bias_gelu_fusion": layout.tanh_gelu,
            "masked_softmax_fusion": True,
            "bias_dropout_add_fusion": True,
            "bias": True,
            "normalization": "layernorm",
            "encoder_arch": "transformer",
            "decoder_arch": "transformer",
            "activation": "gelu",
            "headscale": False,
        }

    def side(layers: int) -> dict:
        return {
            "arch": "transformer",
            "num_layers": layers,
            "hidden_size": layout.hidden,
            "ffn_hidden_size": layout.ffn,
            "num_attention_heads": layout.heads,
            "kv_channels": None,
            "layernorm_epsilon": 1e-5,
            "bias_activation_fusion": layout.tanh_gelu,
            "bias": True,
            "activation": "gelu",
            "normalization": "layernorm",
            "transformer_block_type": "pre_ln",
            "position_embedding_type": "learned_absolute",
            "headscale": False,
        }

    return {"name": "MegaMolBART", **common, "encoder": side(layout.enc_layers), "decoder": side(layout.dec_layers)}


def write_nemo_archive(
    path: Path, layout: NemoLayout, state: dict[str, torch.Tensor], *, gzip: bool = False
) -> Path:
    """Write `state` as NeMo does: a tar of ``./``-prefixed members with hashed tokenizer names."""
    vocab_member, regex_member = "3f9ab6a1c2_megamolbart.vocab", "9d0e4c77b1_megamolbart.model"
    buf = io.BytesIO()
    torch.save(state, buf)
    regex = (
        r"\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9]"
    )
    members = {
        "model_config.yaml": yaml.safe_dump(nemo_yaml(layout, vocab_member, regex_member)).encode(),
        "model_weights.ckpt": buf.getvalue(),
        vocab_member: "".join(t + "\n" for t in layout.vocab).encode(),
        regex_member: regex.encode(),
    }
    with tarfile.open(path, "w:gz" if gzip else "w:") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# ----- reference forward (Megatron semantics, [seq, batch, hidden] like NeMo) -----------------
def _ln(x: torch.Tensor, sd: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], eps=1e-5)


def _gelu(x: torch.Tensor, tanh: bool) -> torch.Tensor:
    if tanh:  # Megatron's fused bias_gelu
        return x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))
    return F.gelu(x)


def _core_attention(q, k, v, bias):
    """q [sq, b, np, hn], k/v [sk, b, np, hn], additive bias broadcastable to [b, np, sq, sk]."""
    hn = q.shape[-1]
    scores = torch.einsum("qbnh,kbnh->bnqk", q, k) / math.sqrt(hn) + bias
    probs = torch.softmax(scores, dim=-1)
    ctx = torch.einsum("bnqk,kbnh->qbnh", probs, v)
    return ctx.reshape(ctx.shape[0], ctx.shape[1], -1)


def _self_attention(x, sd, p, heads, bias):
    mixed = F.linear(x, sd[p + "query_key_value.weight"], sd[p + "query_key_value.bias"])
    sq, b, _ = mixed.shape
    mixed = mixed.view(sq, b, heads, -1)  # [sq, b, np, 3 * hn]
    q, k, v = torch.chunk(mixed, 3, dim=-1)
    return F.linear(_core_attention(q, k, v, bias), sd[p + "dense.weight"], sd[p + "dense.bias"])


def _cross_attention(x, memory, sd, p, heads, bias):
    q = F.linear(x, sd[p + "query.weight"], sd[p + "query.bias"])
    q = q.view(q.shape[0], q.shape[1], heads, -1)
    kv = F.linear(memory, sd[p + "key_value.weight"], sd[p + "key_value.bias"])
    kv = kv.view(kv.shape[0], kv.shape[1], heads, -1)  # [sk, b, np, 2 * hn]
    k, v = torch.chunk(kv, 2, dim=-1)
    return F.linear(_core_attention(q, k, v, bias), sd[p + "dense.weight"], sd[p + "dense.bias"])


def _mlp(x, sd, p, tanh):
    hmid = _gelu(F.linear(x, sd[p + "dense_h_to_4h.weight"], sd[p + "dense_h_to_4h.bias"]), tanh)
    return F.linear(hmid, sd[p + "dense_4h_to_h.weight"], sd[p + "dense_4h_to_h.bias"])


def reference_forward(
    state: dict[str, torch.Tensor], layout: NemoLayout, enc_ids: torch.Tensor, enc_mask: torch.Tensor,
    dec_ids: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder output ``[B, S, H]`` and decoder logits ``[B, T, V]`` as NeMo computes them (fp32)."""
    sd = {k: v.double() for k, v in state.items()}
    emb = "enc_dec_model.encoder_embedding."
    neg = -1e30  # additive mask, as Megatron fills masked scores with a large negative value

    def embed(ids):
        pos = torch.arange(ids.shape[1])
        x = sd[emb + "word_embeddings.weight"][ids] + sd[emb + "position_embeddings.weight"][pos][None]
        return x.transpose(0, 1)  # [s, b, h]

    pad_bias = torch.zeros(enc_mask.shape, dtype=torch.float64).masked_fill(~enc_mask.bool(), neg)[:, None, None, :]
    x = embed(enc_ids)
    for i in range(layout.enc_layers):
        lp = f"{ENC}layers.{i}."
        x = x + _self_attention(_ln(x, sd, lp + "input_layernorm"), sd, lp + "self_attention.", layout.heads,
                                pad_bias)
        x = x + _mlp(_ln(x, sd, lp + "post_attention_layernorm"), sd, lp + "mlp.", layout.tanh_gelu)
    memory = _ln(x, sd, ENC + "final_layernorm")

    t = dec_ids.shape[1]
    causal = torch.triu(torch.full((t, t), neg, dtype=torch.float64), diagonal=1)[None, None]
    y = embed(dec_ids)
    for i in range(layout.dec_layers):
        lp = f"{DEC}layers.{i}."
        y = y + _self_attention(_ln(y, sd, lp + "input_layernorm"), sd, lp + "self_attention.", layout.heads, causal)
        y = y + _cross_attention(_ln(y, sd, lp + "post_attention_layernorm"), memory, sd, lp + "inter_attention.",
                                 layout.heads, pad_bias)
        y = y + _mlp(_ln(y, sd, lp + "post_inter_attention_layernorm"), sd, lp + "mlp.", layout.tanh_gelu)
    y = _ln(y, sd, DEC + "final_layernorm")
    if layout.tied_head:
        logits = F.linear(y, sd[emb + "word_embeddings.weight"], sd["enc_dec_model.tokens_head.bias"])
    else:
        logits = F.linear(y, sd["enc_dec_model.tokens_head.weight"])
    return memory.transpose(0, 1).float(), logits.transpose(0, 1).float()


def scrambled_smiles(smiles: str, avoid: set[str], seed: int = 0, attempts: int = 5000) -> str:
    """A valid molecule made by shuffling the atom tokens of `smiles` over its skeleton
    (same length and ring/branch syntax, different chemistry), not in `avoid`.
    Aromatic and aliphatic atoms are shuffled among themselves, so rings stay aromatic."""
    import re

    from bionemo_lite.chem import try_canonical

    atom = re.compile(r"^(\[[^\]]+\]|Br|Cl|[BCNOPSFIbcnops])$")
    tokens = re.findall(r"\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|%\d{2}|\d", smiles)
    groups = [
        [i for i, t in enumerate(tokens) if atom.match(t) and t.strip("[]")[0].islower() == aromatic]
        for aromatic in (True, False)
    ]
    rng = random.Random(seed)
    for _ in range(attempts):
        out = list(tokens)
        for slots in groups:
            atoms = [tokens[i] for i in slots]
            rng.shuffle(atoms)
            for i, a in zip(slots, atoms):
                out[i] = a
        canon = try_canonical("".join(out))
        if canon is not None and canon not in avoid:
            return canon
    raise RuntimeError(f"no valid scramble of {smiles} in {attempts} attempts")
