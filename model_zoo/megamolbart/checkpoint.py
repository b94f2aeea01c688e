"""Reading and writing MegaMolBART checkpoints.

Two formats:

* NeMo ``.nemo`` archives: a tar (maybe gzipped, member names maybe prefixed
  with ``./``) holding ``model_config.yaml`` (the ``model`` section of the
  training config), ``model_weights.ckpt`` (a torch state dict with NeMo's
  names, read with ``weights_only=True``) and the tokenizer files
  (``<hash>_megamolbart.vocab`` and maybe ``<hash>_megamolbart.model``, the
  regex). An extracted archive (a folder with the same files) reads the same.
* This project's export: a folder with ``model.safetensors``, ``config.json``
  and ``vocab.txt`` (`save_pretrained`).

The architecture comes from the checkpoint: config values first, tensor shapes
where the config is silent or holds an unresolved interpolation. Tensors the
architecture does not expect, or expected tensors that are absent, are a
`CheckpointError` listing all of them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from bionemo_lite.errors import CheckpointError
from bionemo_lite.weights import read_safetensors, safe_torch_load

from .network import MegaMolBARTConfig, MegaMolBARTNetwork
from .tokenizer import MegaMolBARTTokenizer

logger = logging.getLogger(__name__)

# NeMo name prefix -> our module name prefix (longest first).
NEMO_PREFIXES: tuple[tuple[str, str], ...] = (
    ("enc_dec_model.enc_dec_model.encoder.model.", "encoder."),
    ("enc_dec_model.enc_dec_model.decoder.model.", "decoder."),
    ("enc_dec_model.", ""),
)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.txt"
NEMO_CONFIG = "model_config.yaml"
NEMO_WEIGHTS = "model_weights.ckpt"
FORMAT_VERSION = 1
MEGAMOLBART_TARGET = "bionemo.model.molecule.megamolbart.megamolbart_model.MegaMolBARTModel"


@dataclass
class LoadedCheckpoint:
    """What a checkpoint holds, ready to build a model from."""

    config: MegaMolBARTConfig
    tensors: dict[str, torch.Tensor]  # our names (`MegaMolBARTNetwork.canonical_state_dict`)
    tokenizer: MegaMolBARTTokenizer
    source: str
    tokenizer_from_checkpoint: bool
    nemo: bool = False  # names in errors are then given as NeMo spells them


# ----- NeMo names ---------------------------------------------------------------------------
def from_nemo_names(state: dict[str, Any], share_token_embeddings: bool, source: str) -> dict[str, torch.Tensor]:
    """NeMo state-dict names -> ours; Transformer Engine ``_extra_state`` entries are dropped.

    Raises:
        CheckpointError: a tied decoder embedding that differs from the encoder's.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("._extra_state") or not isinstance(value, torch.Tensor):
            continue
        name = key
        for nemo_prefix, ours in NEMO_PREFIXES:
            if key.startswith(nemo_prefix):
                name = ours + key[len(nemo_prefix):]
                break
        out[name] = value
    if share_token_embeddings:
        for key in [k for k in out if k.startswith("decoder_embedding.")]:
            twin = out.get(key.replace("decoder_embedding.", "encoder_embedding.", 1))
            value = out.pop(key)
            if twin is not None and not torch.equal(twin, value):
                raise CheckpointError(
                    f"{source}: {key} differs from the encoder embedding although share_token_embeddings is true"
                )
    return out


def nemo_name(key: str) -> str:
    """NeMo's name for one of our parameter names."""
    for nemo_prefix, ours in NEMO_PREFIXES:
        if ours and key.startswith(ours):
            return nemo_prefix + key[len(ours):]
    return "enc_dec_model." + key


def to_nemo_names(network: MegaMolBARTNetwork) -> dict[str, torch.Tensor]:
    """Our parameters under NeMo's names (a tied decoder embedding appears twice, as NeMo saves it)."""
    return {nemo_name(k): v.detach().cpu().clone() for k, v in network.state_dict().items()}


# ----- config -------------------------------------------------------------------------------
def _as_int(value: Any) -> int | None:
    """An int config value, or None for absent/unresolved ones (``${multiply:...}``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise CheckpointError(message)


def model_section(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` section: a .nemo holds it alone, a full training config nests it."""
    if isinstance(cfg.get("model"), dict) and "hidden_size" not in cfg and "encoder" not in cfg:
        return cfg["model"]
    return cfg


def config_from_nemo(cfg: dict[str, Any], tensors: dict[str, torch.Tensor], source: str) -> MegaMolBARTConfig:
    """The architecture from a NeMo ``model_config.yaml`` (flat BioNeMo v1 style, or with
    ``encoder:``/``decoder:`` sections) and the tensor shapes (NeMo names already mapped).

    Raises:
        CheckpointError: a variant this network does not implement (relative
            positions, RMSNorm, post-LN, gated activations, perceiver or MolMIM
            hiddens...), or a shape the config cannot give.
    """
    cfg = model_section(cfg)
    enc = cfg.get("encoder") if isinstance(cfg.get("encoder"), dict) else cfg
    dec = cfg.get("decoder") if isinstance(cfg.get("decoder"), dict) else cfg

    for side, c in (("encoder", enc), ("decoder", dec)):
        arch = c.get("arch", cfg.get(f"{side}_arch", "transformer"))
        checks = {
            "arch": (arch, "transformer"),
            "position_embedding_type": (c.get("position_embedding_type", "learned_absolute"), "learned_absolute"),
            "activation": (c.get("activation", "gelu"), "gelu"),
            "normalization": (c.get("normalization", "layernorm"), "layernorm"),
            "transformer_block_type": (c.get("transformer_block_type", "pre_ln"), "pre_ln"),
            "headscale": (bool(c.get("headscale", False)), False),
            "megatron_legacy": (bool(c.get("megatron_legacy", cfg.get("megatron_legacy", False))), False),
        }
        for name, (got, want) in checks.items():
            _require(got == want, f"{source}: {side} {name}={got!r} is not supported (MegaMolBART uses {want!r})")
    _require(not cfg.get("hiddens"), f"{source}: models with a 'hiddens' module (MolMIM) are not MegaMolBART")
    if "tokens_head.weight" not in tensors and "tokens_head.bias" not in tensors:
        raise CheckpointError(f"{source}: no tokens_head tensors; is this a MegaMolBART encoder-decoder checkpoint?")

    word = tensors.get("encoder_embedding.word_embeddings.weight")
    pos = tensors.get("encoder_embedding.position_embeddings.weight")
    _require(word is not None and pos is not None,
             f"{source}: missing keys: encoder_embedding.word_embeddings.weight / position_embeddings.weight")
    vocab_size, hidden = (int(d) for d in word.shape)

    def layers_in(prefix: str) -> int:
        found = {int(m.group(1)) for k in tensors if (m := re.match(rf"{prefix}\.layers\.(\d+)\.", k))}
        return max(found) + 1 if found else 0

    def ffn_from_weights() -> int | None:
        w = tensors.get("encoder.layers.0.mlp.dense_h_to_4h.weight")
        return int(w.shape[0]) if w is not None else None

    heads = _as_int(enc.get("num_attention_heads"))
    _require(heads is not None, f"{source}: model_config.yaml does not give num_attention_heads")
    for key, value in (("hidden_size", hidden), ("num_attention_heads", heads)):
        other = _as_int(dec.get(key))
        _require(other is None or other == value,
                 f"{source}: encoder and decoder {key} differ ({value} vs {other}); not supported")
    cfg_hidden = _as_int(enc.get("hidden_size"))
    _require(cfg_hidden is None or cfg_hidden == hidden,
             f"{source}: hidden_size is {cfg_hidden} in the config but the embeddings are {hidden} wide")
    ffn = _as_int(enc.get("ffn_hidden_size")) or ffn_from_weights()
    _require(ffn is not None, f"{source}: cannot tell ffn_hidden_size (not in the config, no MLP weights)")
    dec_ffn = _as_int(dec.get("ffn_hidden_size"))
    _require(dec_ffn is None or dec_ffn == ffn, f"{source}: encoder/decoder ffn_hidden_size differ; not supported")

    fusion = enc.get("bias_activation_fusion", cfg.get("bias_gelu_fusion", True))
    tied_head = cfg.get("share_decoder_tokens_head_embeddings")
    if tied_head is None:
        tied_head = "tokens_head.weight" not in tensors
    return MegaMolBARTConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_layers=_as_int(enc.get("num_layers")) or layers_in("encoder"),
        decoder_num_layers=_as_int(dec.get("num_layers")) or layers_in("decoder"),
        ffn_hidden_size=ffn,
        num_attention_heads=heads,
        kv_channels=_as_int(enc.get("kv_channels")),
        max_position_embeddings=int(pos.shape[0]),
        layernorm_epsilon=float(enc.get("layernorm_epsilon", 1e-5)),
        bias=bool(enc.get("bias", True)),
        # Megatron's fused bias-GELU kernel is the tanh approximation; so is openai_gelu.
        gelu_approximate="tanh" if (fusion or enc.get("openai_gelu", False)) else "none",
        share_token_embeddings=bool(cfg.get("share_token_embeddings", True)),
        share_decoder_tokens_head_embeddings=bool(tied_head),
        tokens_head_bias="tokens_head.bias" in tensors,
        hidden_dropout=float(enc.get("hidden_dropout", 0.1)),
        attention_dropout=float(enc.get("attention_dropout", 0.1)),
        embedding_dropout=float(cfg.get("embedding_dropout", 0.1)),
        init_method_std=float(enc.get("init_method_std", cfg.get("init_method_std", 0.02))),
    )


def nemo_config_dict(config: MegaMolBARTConfig, vocab_name: str, regex_name: str) -> dict[str, Any]:
    """A ``model_config.yaml`` in NeMo's encoder/decoder layout for `config`."""

    def side(layers: int) -> dict[str, Any]:
        return {
            "arch": "transformer",
            "num_layers": layers,
            "hidden_size": config.hidden_size,
            "ffn_hidden_size": config.ffn_hidden_size,
            "num_attention_heads": config.num_attention_heads,
            "kv_channels": config.kv_channels,
            "init_method_std": config.init_method_std,
            "hidden_dropout": config.hidden_dropout,
            "attention_dropout": config.attention_dropout,
            "layernorm_epsilon": config.layernorm_epsilon,
            "bias": config.bias,
            "bias_activation_fusion": config.gelu_approximate == "tanh",
            "activation": "gelu",
            "normalization": "layernorm",
            "transformer_block_type": "pre_ln",
            "position_embedding_type": "learned_absolute",
            "headscale": False,
        }

    return {
        "target": MEGAMOLBART_TARGET,
        "name": "MegaMolBART",
        "seq_length": config.max_position_embeddings,
        "max_position_embeddings": config.max_position_embeddings,
        "encoder": side(config.num_layers),
        "decoder": side(config.decoder_num_layers),
        "share_token_embeddings": config.share_token_embeddings,
        "share_decoder_tokens_head_embeddings": config.share_decoder_tokens_head_embeddings,
        "tokens_head_bias": config.tokens_head_bias,
        "embedding_dropout": config.embedding_dropout,
        "tokenizer": {
            "library": "regex",
            "type": None,
            "model": f"nemo:{regex_name}",
            "vocab_file": f"nemo:{vocab_name}",
            "merge_file": None,
        },
        "precision": 32,
    }


# ----- .nemo archives -----------------------------------------------------------------------
def _clean(name: str) -> str:
    return str(PurePosixPath(name.lstrip("/"))).removeprefix("./")


def _pick_tokenizer_file(names: list[str], wanted: Any, suffix: str) -> str | None:
    """The archive member for a tokenizer file: the one the config names (``nemo:<file>``)
    when present, else the only ``*<suffix>`` file."""
    candidates = [n for n in names if n.endswith(suffix)]
    if isinstance(wanted, str) and wanted:
        base = PurePosixPath(wanted.removeprefix("nemo:")).name
        for n in candidates:
            if PurePosixPath(n).name == base:
                return n
    if len(candidates) > 1:
        raise CheckpointError(f"several {suffix} files ({', '.join(candidates)}) and the config names none of them")
    return candidates[0] if candidates else None


# What reading a damaged tar (or gzip inside it) raises; OSError covers gzip.BadGzipFile.
_ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Archive:
    """Read access to a ``.nemo`` tar or an extracted folder, by cleaned member name."""

    def __init__(self, path: Path):
        self.path = path
        self._tar: tarfile.TarFile | None = None
        if path.is_dir():
            self.names = sorted(
                str(p.relative_to(path).as_posix()) for p in path.rglob("*") if p.is_file()
            )
        else:
            try:
                self._tar = tarfile.open(path, "r:*")
                # getmembers() reads the whole index: a cut-off archive fails here, not later
                self._members = {_clean(m.name): m for m in self._tar.getmembers() if m.isfile()}
            except _ARCHIVE_ERRORS as exc:
                self.close()
                raise CheckpointError(f"{path}: not a readable .nemo archive (a tar file): {_first_line(exc)}") from exc
            self.names = sorted(self._members)

    def read(self, name: str) -> bytes:
        try:
            if self._tar is None:
                return (self.path / name).read_bytes()
            fh = self._tar.extractfile(self._members[name])
            if fh is None:
                raise CheckpointError(f"{self.path}: cannot read {name}")
            return fh.read()
        except _ARCHIVE_ERRORS as exc:
            raise CheckpointError(f"{self.path}: {name} cannot be read: {_first_line(exc)}") from exc

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


def _find(names: list[str], filename: str, source: str) -> str:
    hits = [n for n in names if PurePosixPath(n).name == filename]
    if not hits:
        raise CheckpointError(f"{source}: no {filename} inside (it holds: {', '.join(names[:20]) or 'nothing'})")
    top = [n for n in hits if "/" not in n]
    if top:
        return top[0]
    ranks = sorted({PurePosixPath(n).parent.name for n in hits})
    if len(hits) > 1 or ranks != ["mp_rank_00"]:
        raise CheckpointError(
            f"{source}: {filename} is split over {', '.join(ranks)}; tensor/pipeline-parallel checkpoints are "
            "not supported (merge them to one rank with NeMo first)"
        )
    return hits[0]


def _load_torch_bytes(data: bytes, name: str, source: str) -> dict[str, Any]:
    state = safe_torch_load(io.BytesIO(data), name=f"{source}: {name}")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning checkpoint rather than a bare state dict
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: {name} does not hold a state dict")
    return state


def read_nemo(path: Path) -> LoadedCheckpoint:
    """Read a ``.nemo`` archive or an extracted one.

    Raises:
        CheckpointError: not a tar, files missing, unsupported architecture.
    """
    import yaml

    path = Path(path)
    source = str(path)
    archive = _Archive(path)
    try:
        names = archive.names
        try:
            cfg = yaml.safe_load(archive.read(_find(names, NEMO_CONFIG, source)).decode("utf-8")) or {}
        except yaml.YAMLError as exc:
            raise CheckpointError(f"{source}: {NEMO_CONFIG} is not valid YAML: {exc}") from exc
        if not isinstance(cfg, dict):
            raise CheckpointError(f"{source}: {NEMO_CONFIG} is not a mapping")
        weights_name = _find(names, NEMO_WEIGHTS, source)
        state = _load_torch_bytes(archive.read(weights_name), weights_name, source)
        model_cfg = model_section(cfg)
        tok_cfg = model_cfg.get("tokenizer") or {}
        vocab_name = _pick_tokenizer_file(names, tok_cfg.get("vocab_file") or tok_cfg.get("vocab_path"), ".vocab")
        regex_name = _pick_tokenizer_file(names, tok_cfg.get("model") or tok_cfg.get("model_path"), ".model")
        tokenizer, from_checkpoint = MegaMolBARTTokenizer(), False
        if vocab_name is not None:
            regex_text = None
            if regex_name is not None:
                try:
                    regex_text = archive.read(regex_name).decode("utf-8")
                except UnicodeDecodeError:
                    logger.warning("%s: %s is not a regex text file; using the MegaMolBART regex", source, regex_name)
            tokenizer = MegaMolBARTTokenizer.from_text(archive.read(vocab_name).decode("utf-8"), regex_text)
            from_checkpoint = True
        else:
            logger.warning("%s holds no .vocab file; using the built-in MegaMolBART vocabulary", source)
    finally:
        archive.close()
    share = bool(model_cfg.get("share_token_embeddings", True))
    tensors = from_nemo_names(state, share, source)
    config = config_from_nemo(model_cfg, tensors, source)
    _check_vocab(config, tokenizer, source)
    return LoadedCheckpoint(config, tensors, tokenizer, source, from_checkpoint, nemo=True)


def _check_vocab(config: MegaMolBARTConfig, tokenizer: MegaMolBARTTokenizer, source: str) -> None:
    if len(tokenizer) > config.vocab_size:
        raise CheckpointError(
            f"{source}: the tokenizer has {len(tokenizer)} tokens but the embedding only {config.vocab_size} rows"
        )


def write_nemo(network: MegaMolBARTNetwork, tokenizer: MegaMolBARTTokenizer, path: Path) -> Path:
    """Write a ``.nemo`` archive (NeMo names, encoder/decoder config, tokenizer files)."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vocab_name, regex_name = "megamolbart.vocab", "megamolbart.model"
    buf = io.BytesIO()
    torch.save(to_nemo_names(network), buf)
    files = {
        NEMO_CONFIG: yaml.safe_dump(nemo_config_dict(network.config, vocab_name, regex_name), sort_keys=False).encode(),
        NEMO_WEIGHTS: buf.getvalue(),
        vocab_name: tokenizer.vocab_text().encode("utf-8"),
        regex_name: tokenizer.regex.encode("utf-8"),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"./{name}")  # NeMo's archives carry the './' prefix
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


# ----- safetensors export ------------------------------------------------------------------
def save_pretrained(network: MegaMolBARTNetwork, tokenizer: MegaMolBARTTokenizer, folder: Path) -> Path:
    """Write ``model.safetensors`` + ``config.json`` + ``vocab.txt`` into `folder`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.canonical_state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "model_type": "megamolbart"})
    config = {
        "model_type": "megamolbart",
        "format_version": FORMAT_VERSION,
        "architecture": network.config.to_dict(),
        "tokenizer": {"vocab_file": VOCAB_FILE, "regex": tokenizer.regex},
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / VOCAB_FILE).write_text(tokenizer.vocab_text(), encoding="utf-8")
    return folder


def read_pretrained(folder: Path) -> LoadedCheckpoint:
    """Read a `save_pretrained` folder.

    Raises:
        CheckpointError: a missing file or an unreadable config.
    """
    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE):
        if not (folder / name).is_file():
            raise CheckpointError(
                f"{folder}: no {name} (a MegaMolBART export has {CONFIG_FILE}, {WEIGHTS_FILE}, {VOCAB_FILE})"
            )
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE}: not valid JSON: {exc}") from exc
    if meta.get("model_type") != "megamolbart" or not isinstance(meta.get("architecture"), dict):
        raise CheckpointError(
            f"{folder / CONFIG_FILE}: not a MegaMolBART export (model_type {meta.get('model_type')!r})"
        )
    config = MegaMolBARTConfig.from_dict(meta["architecture"])
    tok = meta.get("tokenizer") or {}
    tokenizer = MegaMolBARTTokenizer.from_text((folder / VOCAB_FILE).read_text(encoding="utf-8"), tok.get("regex"))
    tensors = read_safetensors(folder / WEIGHTS_FILE)
    _check_vocab(config, tokenizer, str(folder))
    return LoadedCheckpoint(config, tensors, tokenizer, str(folder), True)


def read_checkpoint(path: Path) -> LoadedCheckpoint:
    """Any supported layout: a ``.nemo`` file, an extracted one, an export folder, or a
    folder holding exactly one ``.nemo`` file.

    Raises:
        CheckpointError: nothing recognisable at `path`.
    """
    path = Path(path)
    if path.is_file():
        return read_nemo(path)
    if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
        return read_pretrained(path)
    if (path / NEMO_CONFIG).is_file():
        return read_nemo(path)
    nemos = sorted(path.glob("*.nemo")) if path.is_dir() else []
    if len(nemos) == 1:
        return read_nemo(nemos[0])
    raise CheckpointError(
        f"{path}: not a MegaMolBART checkpoint; expected a .nemo file, an extracted one ({NEMO_CONFIG} + "
        f"{NEMO_WEIGHTS}) or an export folder ({CONFIG_FILE} + {WEIGHTS_FILE} + {VOCAB_FILE})"
    )


def build_network(ckpt: LoadedCheckpoint) -> MegaMolBARTNetwork:
    """A network with the checkpoint's weights (strict: see `load_canonical_state_dict`)."""
    network = MegaMolBARTNetwork(ckpt.config)
    network.load_canonical_state_dict(ckpt.tensors, source=ckpt.source, display=nemo_name if ckpt.nemo else str)
    return network.eval()
