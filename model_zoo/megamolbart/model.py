"""`MegaMolBARTModel`: the verbs (embed, decode, generate, score) over the network.

Field names follow BioNeMo v1 / MolMIM: ``hiddens`` + ``mask`` per molecule
(`encode`, the ``smis_to_hidden`` of BioNeMo), the **masked** mean of the
hiddens as the embedding (upstream averaged the padding in), ``decode``
(``hidden_to_smis``) and ``generate`` (``sample`` with greedy-perturbate,
topkp-perturbate and beam-search-perturbate).

Every SMILES is checked as text first (length in characters and tokens,
characters: `bionemo_lite.smiles_text`), then validated and canonicalised
with RDKit through `bionemo_lite.smiles_guard` (a worker process, so a crash
in RDKit fails one record); a bad one is an `InvalidInputError` naming the
record (or, with ``on_invalid="skip"``, an entry of the result's ``errors``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from bionemo_lite import chem, smiles_guard
from bionemo_lite.batching import check_tokens_per_batch, run_batches, token_budget_batches
from bionemo_lite.encoding import resolve_layers
from bionemo_lite.errors import BionemoLiteError, InvalidInputError
from bionemo_lite.model import BioModel
from bionemo_lite.options import check_bool, check_float, check_int
from bionemo_lite.pooling import get_pooling
from bionemo_lite.records import Inputs, LengthPolicy, Record, as_records
from bionemo_lite.smiles_text import check_smiles_text
from bionemo_lite.results import Decoded, Embeddings, Generated, GeneratedRecord, RecordError, Scores
from bionemo_lite.spec import ModelSpec
from bionemo_lite.verbs import OnnxEncoder
from bionemo_lite.weights import resolve_dtype

from . import decoding, guided
from .checkpoint import build_network, read_checkpoint, save_pretrained, write_nemo
from .network import MegaMolBARTConfig, MegaMolBARTNetwork
from .sampling import DEFAULT_ROUNDS, MAX_BEAMS, Harvest, SamplingPlan, plan_sampling
from .tokenizer import MegaMolBARTTokenizer
from . import POOLINGS

logger = logging.getLogger(__name__)

OnInvalid = Literal["error", "skip"]
DECODE_METHODS: tuple[str, ...] = ("greedy", "beam")


def pad_ids(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids ``[B, T]`` and the mask ``[B, T]`` (True on tokens)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    return ids.to(device), mask.to(device)


def _seed_for(seed: int | None, *keys: int) -> int:
    """A seed derived from `seed` and `keys` (record index, sample index): each record and
    sample draws its own random numbers, whatever the batching and the other inputs."""
    if seed is None:
        return secrets.randbits(63)
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1, dtype=np.uint32)[0])


class MegaMolBARTModel(BioModel):
    """A loaded MegaMolBART: SMILES in; hiddens, embeddings, molecules and likelihoods out.

    Attributes:
        network: the `MegaMolBARTNetwork` (eval mode).
        tokenizer: the checkpoint's `MegaMolBARTTokenizer`.
    """

    def __init__(
        self,
        spec: ModelSpec,
        network: MegaMolBARTNetwork,
        tokenizer: MegaMolBARTTokenizer,
        device: str = "cpu",
        dtype: str | None = None,
    ):
        torch_dtype = resolve_dtype(dtype, device, default_gpu="float32")
        super().__init__(spec, device=str(device), dtype=str(torch_dtype).removeprefix("torch."),
                         config=network.config.to_dict())
        if len(tokenizer) > network.config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens, the network only {network.config.vocab_size}")
        self.network = network.to(device=device, dtype=torch_dtype).eval()
        self.tokenizer = tokenizer
        self._device = torch.device(device)

    # ----- construction / export ------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: MegaMolBARTConfig | dict[str, Any],
        tokenizer: MegaMolBARTTokenizer | None = None,
        *,
        seed: int = 0,
        spec: ModelSpec | None = None,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> MegaMolBARTModel:
        """A new model with Megatron-initialised random weights (to train or fine-tune).

        `config` may leave out ``vocab_size``: the tokenizer's size is used.
        """
        tokenizer = tokenizer or MegaMolBARTTokenizer()
        if isinstance(config, dict):
            config = MegaMolBARTConfig.from_dict({"vocab_size": len(tokenizer), **config})
        network = MegaMolBARTNetwork(config)
        network.reset_parameters(seed=seed)
        return cls(spec or default_spec(), network, tokenizer, device=device, dtype=dtype)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write this project's export (``model.safetensors``, ``config.json``, ``vocab.txt``)."""
        return save_pretrained(self.network, self.tokenizer, Path(folder))

    def save_nemo(self, path: str | Path) -> Path:
        """Write a NeMo ``.nemo`` archive of these weights."""
        return write_nemo(self.network, self.tokenizer, Path(path))

    @property
    def max_length(self) -> int:
        """Most SMILES tokens the encoder takes (decoding needs one position more: ``max_length - 1``)."""
        return self.network.config.max_position_embeddings

    @property
    def num_layers(self) -> int:
        return self.network.config.num_layers

    def close(self) -> None:
        self.network.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ----- input preparation ----------------------------------------------------------------
    def _tokens(
        self,
        inputs: Inputs,
        *,
        canonicalize: bool,
        on_invalid: OnInvalid,
        limit: int,
        on_too_long: LengthPolicy = "error",
    ) -> tuple[list[Record], list[list[int]], list[str], list[RecordError]]:
        """Validated records (canonical SMILES), their token ids, truncated ids, and skipped records."""
        if on_invalid not in ("error", "skip"):
            raise InvalidInputError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
        if on_too_long not in ("error", "truncate"):
            raise InvalidInputError(f"on_too_long must be 'error' or 'truncate', got {on_too_long!r}")
        canonicalize = check_bool("canonicalize", canonicalize)
        records: list[Record] = []
        token_ids: list[list[int]] = []
        truncated: list[str] = []
        errors: list[RecordError] = []

        def fail(rec: Record, exc: InvalidInputError) -> None:
            if on_invalid == "error":
                raise exc
            errors.append(RecordError(rec.id, rec.index, exc.reason, exc.position))

        # 1. Length (characters, then this tokenizer's tokens) and characters, before RDKit runs.
        checked: list[tuple[Record, str]] = []
        for rec in as_records(inputs):
            try:
                checked.append((rec, check_smiles_text(rec.sequence, rec.id, max_tokens=limit,
                                                       on_too_long=on_too_long,
                                                       count_tokens=self.tokenizer.count_tokens)))
            except InvalidInputError as exc:
                fail(rec, exc)
        # 2. RDKit, where a crash or a hang fails one record (a worker process by default).
        parsed = smiles_guard.parse_many([text for _, text in checked], [rec.id for rec, _ in checked],
                                         canonicalize=canonicalize)
        # 3. The model's tokens of the text it will embed.
        for (rec, _), text in zip(checked, parsed):
            try:
                if isinstance(text, InvalidInputError):
                    raise text
                ids = self.tokenizer.encode(text, record=rec.id)
                if len(ids) > limit:
                    if on_too_long == "error":
                        raise InvalidInputError(
                            f"SMILES has {len(ids)} tokens, more than the model's maximum of {limit}; "
                            "shorten it or ask for truncation (on_too_long='truncate')",
                            record=rec.id,
                        )
                    ids = ids[:limit]
                    truncated.append(rec.id)
            except InvalidInputError as exc:
                fail(rec, exc)
                continue
            records.append(Record(rec.id, text, rec.index))
            token_ids.append(ids)
        errors.sort(key=lambda e: e.index)
        return records, token_ids, truncated, errors

    def _batched(
        self,
        lengths: Sequence[int],
        run: Callable[[list[int]], dict[int, Any]],
        tokens_per_batch: int | None,
        factor: int = 1,
    ) -> dict[int, Any]:
        """Length-sorted token-budget batches (OOM-split by the core); `factor` rows per record.

        Raises:
            BionemoLiteError: a row that runs out of memory even alone.
        """
        budget = max(1, check_tokens_per_batch(tokens_per_batch) // max(1, factor))
        results, failures = run_batches(token_budget_batches(lengths, budget, extra_tokens=1), run)
        if failures:
            index, reason = next(iter(sorted(failures.items())))
            raise BionemoLiteError(
                f"row {index} ({lengths[index]} tokens) could not be computed: {reason}; "
                "try a smaller tokens_per_batch or another device"
            )
        return results

    # ----- LoRA ------------------------------------------------------------------------------
    def smiles_token_ids(self, smiles: Sequence[str]) -> list[list[int]]:
        """The encoder's token ids of each SMILES, validated and canonicalised as ``embed`` does.

        Raises:
            InvalidInputError: a bad SMILES or one over the maximum, naming the record.
        """
        _, token_ids, _, _ = self._tokens(list(smiles), canonicalize=True, on_invalid="error", limit=self.max_length)
        return token_ids

    def lora_encoder(self) -> OnnxEncoder:
        """The encoder for LoRA fine-tuning (`bionemo_lite.verbs.LoraAdaptable`; see `.lora`)."""
        from .lora import megamolbart_lora_encoder

        return megamolbart_lora_encoder(self)

    # ----- encode / embed -------------------------------------------------------------------
    @torch.no_grad()
    def _encode_records(
        self, token_ids: list[list[int]], layers: tuple[int, ...], tokens_per_batch: int | None
    ) -> dict[int, dict[int, torch.Tensor]]:
        """Per record index: ``{layer: hiddens [L_i, D]}`` (on the device, padding removed)."""

        def run(batch: list[int]) -> dict[int, dict[int, torch.Tensor]]:
            ids, mask = pad_ids([token_ids[i] for i in batch], self.tokenizer.pad_id, self._device)
            hidden = self.network.encode_layers(ids, mask, layers)
            return {
                i: {lay: h[row, : len(token_ids[i])] for lay, h in hidden.items()} for row, i in enumerate(batch)
            }

        return self._batched([len(t) for t in token_ids], run, tokens_per_batch)

    def encode(
        self,
        inputs: Inputs,
        *,
        canonicalize: bool = True,
        on_too_long: LengthPolicy = "error",
        tokens_per_batch: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encoder hiddens and padding mask, as BioNeMo's ``smis_to_hidden``.

        Returns:
            ``hiddens`` float32 ``[N, T, D]`` (T = most tokens among the inputs;
            zeros on padding) and ``mask`` bool ``[N, T]`` (True on tokens), in
            input order.

        Raises:
            InvalidInputError: an unparsable SMILES or an unknown token, naming the record.
        """
        _, token_ids, _, _ = self._tokens(
            inputs, canonicalize=canonicalize, on_invalid="error", limit=self.max_length, on_too_long=on_too_long
        )
        last = self.num_layers
        per = self._encode_records(token_ids, (last,), tokens_per_batch)
        width = max(len(t) for t in token_ids)
        hiddens = np.zeros((len(token_ids), width, self.network.config.hidden_size), dtype=np.float32)
        mask = np.zeros((len(token_ids), width), dtype=bool)
        for i, t in enumerate(token_ids):
            hiddens[i, : len(t)] = per[i][last].float().cpu().numpy()
            mask[i, : len(t)] = True
        return hiddens, mask

    def embed(
        self,
        inputs: Inputs,
        layer: int | Sequence[int] = -1,
        pooling: str = "mean",
        *,
        on_too_long: LengthPolicy = "error",
        tokens_per_batch: int | None = None,
        canonicalize: bool = True,
        on_invalid: OnInvalid = "error",
    ) -> Embeddings:
        """Embed SMILES: the masked mean of the encoder hiddens, or the per-token hiddens.

        Args:
            layer: encoder layer(s): 0 = embeddings, -1 = the last (after the final LayerNorm).
            pooling: ``"mean"`` (over the SMILES tokens only) or ``"per_token"``
                (alias ``"per_residue"``: one ``[L_i, D]`` array per molecule).
            canonicalize: embed RDKit's canonical SMILES (as the model was trained).
            on_invalid: ``"error"`` raises for a bad SMILES; ``"skip"`` reports it in ``errors``.

        Raises:
            InvalidInputError: a bad SMILES (with ``on_invalid="error"``), pooling or layer.
        """
        pool = get_pooling(pooling, POOLINGS)
        layers = resolve_layers(layer, self.num_layers)
        records, token_ids, truncated, errors = self._tokens(
            inputs, canonicalize=canonicalize, on_invalid=on_invalid, limit=self.max_length, on_too_long=on_too_long
        )
        per = self._encode_records(token_ids, layers, tokens_per_batch) if token_ids else {}
        by_layer: dict[int, Any] = {}
        for lay in layers:
            # one record at a time: its rows are exactly its tokens (no padding to mask out)
            arrays = [pool.torch(per[i][lay][None], torch.ones(1, len(t), dtype=torch.bool, device=per[i][lay].device),
                                 bos_index=None)[0] for i, t in enumerate(token_ids)]
            if pool.per_position:
                by_layer[lay] = arrays
            else:
                dim = self.network.config.hidden_size
                by_layer[lay] = np.stack(arrays).astype(np.float32) if arrays else np.zeros((0, dim), np.float32)
        return Embeddings(
            model=self.name,
            ids=[r.id for r in records],
            lengths=[len(t) for t in token_ids],
            layers=layers,
            pooling=pooling,
            by_layer=by_layer,
            truncated=truncated,
            errors=errors,
        )

    # ----- decode ---------------------------------------------------------------------------
    def _as_hiddens(self, hiddens: Any, mask: Any) -> list[torch.Tensor]:
        """Per row, the ``[L_i, D]`` hiddens selected by the mask (validated)."""
        dim = self.network.config.hidden_size
        if isinstance(hiddens, (list, tuple)) and mask is None:
            rows = [torch.as_tensor(np.asarray(h, dtype=np.float32)) for h in hiddens]
        else:
            if torch.is_tensor(hiddens):
                h = hiddens.detach().float().cpu()
            else:
                h = torch.as_tensor(np.asarray(hiddens, dtype=np.float32))
            if h.ndim == 2:
                h = h[None]
            if h.ndim != 3:
                raise InvalidInputError(f"hiddens must be [N, T, {dim}], got shape {tuple(h.shape)}")
            if mask is None:
                m = torch.ones(h.shape[:2], dtype=torch.bool)
            else:
                m = torch.as_tensor(np.asarray(mask.detach().cpu() if torch.is_tensor(mask) else mask)).bool()
                if m.ndim == 1:
                    m = m[None]
            if tuple(m.shape) != tuple(h.shape[:2]):
                raise InvalidInputError(f"mask shape {tuple(m.shape)} does not match hiddens {tuple(h.shape[:2])}")
            rows = [h[i][m[i]] for i in range(h.shape[0])]
        if not rows:
            raise InvalidInputError("no hiddens were given")
        for i, r in enumerate(rows):
            if r.ndim != 2 or r.shape[-1] != dim:
                raise InvalidInputError(f"hiddens must have width {dim}, got shape {tuple(r.shape)}", record=i)
            if r.shape[0] == 0:
                raise InvalidInputError("the mask selects no position", record=i)
            if r.shape[0] > self.max_length:
                raise InvalidInputError(f"{r.shape[0]} positions, more than the model's {self.max_length}", record=i)
            if not torch.isfinite(r).all():
                raise InvalidInputError("hiddens contain NaN or infinity", record=i)
        return rows

    def _decode_rows(
        self,
        rows: list[torch.Tensor],
        *,
        method: str,
        beam_size: int,
        max_length: int | None,
        length_penalty: float,
        tokens_per_batch: int | None,
        generators: Sequence[torch.Generator] | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
    ) -> list[tuple[list[int], float]]:
        """Decode each ``[L_i, D]`` row: its best token ids and log-likelihood."""
        tok = self.tokenizer
        steps = min(max_length or self.max_length, self.max_length)
        common = {"bos": tok.bos_id, "eos": tok.eos_id, "allowed": tok.allowed_output_ids(), "max_steps": steps}
        dtype = next(self.network.parameters()).dtype

        @torch.no_grad()
        def run(batch: list[int]) -> dict[int, tuple[list[int], float]]:
            width = max(rows[i].shape[0] for i in batch)
            memory = torch.zeros(len(batch), width, rows[0].shape[-1], dtype=dtype)
            mask = torch.zeros(len(batch), width, dtype=torch.bool)
            for j, i in enumerate(batch):
                memory[j, : rows[i].shape[0]] = rows[i].to(dtype)
                mask[j, : rows[i].shape[0]] = True
            memory, mask = memory.to(self._device), mask.to(self._device)
            if method == "beam":
                beams = decoding.beam_search(self.network, memory, mask, beam_size=beam_size,
                                             length_penalty=length_penalty, **common)
                return {i: (b.ids[0], b.scores[0]) for i, b in zip(batch, beams)}
            if method == "sample":
                out = decoding.sample(self.network, memory, mask, generators=[generators[i] for i in batch],
                                      top_k=top_k, top_p=top_p, temperature=temperature, **common)
            else:
                out = decoding.greedy(self.network, memory, mask, **common)
            return {i: (ids, score) for i, ids, score in zip(batch, out.ids, out.scores)}

        factor = beam_size if method == "beam" else 1
        results = self._batched([r.shape[0] for r in rows], run, tokens_per_batch, factor)
        return [results[i] for i in range(len(rows))]

    def decode(
        self,
        hiddens: Any,
        mask: Any = None,
        *,
        method: str = "greedy",
        beam_size: int = 5,
        max_length: int | None = None,
        length_penalty: float = 0.0,
        tokens_per_batch: int | None = None,
    ) -> Decoded:
        """Decode hiddens back to SMILES, as BioNeMo's ``hidden_to_smis``.

        Args:
            hiddens: ``[N, T, D]`` array (with `mask` ``[N, T]``, True on
                positions to attend to), or a list of ``[L_i, D]`` arrays.
            method: ``"greedy"`` or ``"beam"`` (best of `beam_size` beams).
            max_length: most tokens to emit (default: the model's positions).

        Returns:
            `Decoded`: the strings, in input order. They are not validated: a
            decoded string may not be a valid molecule (see `generate`).
        """
        if method not in DECODE_METHODS:
            raise InvalidInputError(f"decode method must be one of {', '.join(DECODE_METHODS)}; got {method!r}")
        beam_size = check_int("beam_size", beam_size, low=1, high=MAX_BEAMS)
        if max_length is not None:
            max_length = check_int("max_length", max_length, low=1, high=self.max_length)
        length_penalty = check_float("length_penalty", length_penalty)
        check_tokens_per_batch(tokens_per_batch)
        rows = self._as_hiddens(hiddens, mask)
        out = self._decode_rows(rows, method=method, beam_size=beam_size, max_length=max_length,
                                length_penalty=length_penalty, tokens_per_batch=tokens_per_batch)
        return Decoded(self.name, (self.tokenizer.decode(ids) for ids, _ in out))

    # ----- generate -------------------------------------------------------------------------
    def generate(
        self,
        inputs: Inputs,
        *,
        num_molecules: int = 10,
        scaled_radius: float = 1.0,
        method: str = "greedy-perturbate",
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        beam_size: int = 5,
        seed: int | None = None,
        max_length: int | None = None,
        max_rounds: int = DEFAULT_ROUNDS,
        tokens_per_batch: int | None = None,
        canonicalize: bool = True,
        on_invalid: OnInvalid = "error",
        algorithm: str = guided.UNGUIDED,
        property: str | None = None,
        iterations: int | None = None,
        particles: int | None = None,
        min_similarity: float | None = None,
    ) -> Generated:
        """New molecules around each seed SMILES by perturbing its hiddens (MolMIM-style sampling),
        or optimised for a property by CMA-ES in the latent space (``algorithm="cma-es"``).

        Each round repeats a seed's hiddens `num_molecules` times, perturbs
        them by ``scaled_radius * N(0, 1)`` noise and decodes them (greedy,
        top-k/top-p sampling or beam search). Decoded strings that RDKit cannot
        read and repeats are dropped and counted; rounds are drawn until
        `num_molecules` unique valid molecules are found or `max_rounds` rounds
        are spent.

        Args:
            num_molecules: unique valid molecules wanted per seed (1-1000).
            scaled_radius: standard deviation of the noise added to the hiddens,
                in [0, 2] (MolMIM's range).
            method: ``"greedy-perturbate"``, ``"topkp-perturbate"`` or ``"beam-search-perturbate"``.
            top_k / top_p / temperature: sampling filters of ``topkp-perturbate``
                (top_k in 1..vocabulary, top_p in (0, 1], temperature in [0.001, 100]).
            beam_size: beams of ``beam-search-perturbate``, 1-100 (the best beam of each sample is kept).
            seed: makes the result reproducible (per record: independent of batching).
            max_length: most tokens to emit per molecule (default: the model's positions).
            max_rounds: rounds of `num_molecules` samples drawn at most (1-20); 1 draws
                `num_molecules` samples once and returns what they hold.
            algorithm: ``"sampling"`` (the above) or ``"cma-es"``: property-guided search
                around each seed (`guided.py`: a random hidden-size subspace of the seed's
                hiddens, `scaled_radius` as the initial step size, greedy decoding). Its options:
            property: the objective, maximised: ``"qed"`` (default), ``"plogp"``, ``"logp"``
                or a name registered with `bionemo_lite.properties.register_property`.
            iterations / particles: CMA-ES generations (1-1000, default 10) and candidates
                per generation (2-1000, default 20): ``iterations * particles`` decodes per seed.
            min_similarity: Tanimoto similarity to the seed (Morgan r=2) that every
                returned molecule meets, in [0, 1] (default 0.4, MolMIM's).
                With ``"cma-es"``, `num_molecules` is how many of the best molecules found
                are returned (highest property first, the property also as ``scores``), and
                each record carries ``trace`` (per iteration: ``best`` so far, ``mean``, and
                the ``valid`` / ``feasible`` fractions); `method`, `top_k`, `top_p`,
                `temperature`, `beam_size` and `max_rounds` do not apply.

        Returns:
            Per seed, the unique valid canonical SMILES (most likely first),
            their decoder log-likelihoods as ``scores``, ``properties`` (``qed``,
            ``logp``, ``tanimoto`` to the seed on Morgan fingerprints) and
            ``stats``: ``requested``; ``samples`` looked at (the last round stops
            at the molecule that completes the request), of them ``valid``,
            ``invalid``, ``duplicates``, ``unique`` (= molecules returned) and
            ``same_as_seed``; ``rounds`` drawn; ``shortfall`` = requested minus
            returned (0 when the request was met).

        Raises:
            InvalidInputError: an option of the wrong type or out of range (before
                any work), or a bad SMILES with ``on_invalid="error"``.
        """
        if guided.check_algorithm(algorithm, property=property, iterations=iterations, particles=particles,
                                  min_similarity=min_similarity):
            return self._generate_guided(
                inputs,
                guided.plan_guided(
                    property=property, iterations=iterations, particles=particles, min_similarity=min_similarity,
                    scaled_radius=scaled_radius, num_molecules=num_molecules, seed=seed,
                    unsupported={"method": None if method == "greedy-perturbate" else method, "top_k": top_k,
                                 "top_p": top_p, "temperature": None if temperature == 1.0 else temperature,
                                 "beam_size": None if beam_size == 5 else beam_size,
                                 "max_rounds": None if max_rounds == DEFAULT_ROUNDS else max_rounds},
                ),
                max_length=max_length, tokens_per_batch=tokens_per_batch, canonicalize=canonicalize,
                on_invalid=on_invalid,
            )
        plan = plan_sampling(
            method=method, num_molecules=num_molecules, scaled_radius=scaled_radius, top_k=top_k, top_p=top_p,
            temperature=temperature, beam_size=beam_size, seed=seed, max_length=max_length, max_rounds=max_rounds,
            tokens_per_batch=tokens_per_batch, vocab_size=len(self.tokenizer.allowed_output_ids()),
            positions=self.max_length,
        )
        records, token_ids, _, errors = self._tokens(
            inputs, canonicalize=canonicalize, on_invalid=on_invalid, limit=self.max_length - 1
        )
        last = self.num_layers
        per = self._encode_records(token_ids, (last,), tokens_per_batch) if token_ids else {}
        out = [self._harvest(rec, per[i][last].float().cpu(), plan, tokens_per_batch) for i, rec in enumerate(records)]
        return Generated(model=self.name, records=out, errors=errors)

    def _generate_guided(
        self,
        inputs: Inputs,
        plan: guided.GuidedPlan,
        *,
        max_length: int | None,
        tokens_per_batch: int | None,
        canonicalize: bool,
        on_invalid: OnInvalid,
    ) -> Generated:
        """``generate(algorithm="cma-es")``: one CMA-ES search per seed (`guided.optimise`)."""
        if max_length is not None:
            max_length = check_int("max_length", max_length, low=1, high=self.max_length)
        check_tokens_per_batch(tokens_per_batch)
        records, token_ids, _, errors = self._tokens(
            inputs, canonicalize=canonicalize, on_invalid=on_invalid, limit=self.max_length - 1
        )
        last = self.num_layers
        per = self._encode_records(token_ids, (last,), tokens_per_batch) if token_ids else {}

        def decode(rows: list[torch.Tensor]) -> list[str]:
            out = self._decode_rows(rows, method="greedy", beam_size=1, max_length=max_length,
                                    length_penalty=0.0, tokens_per_batch=tokens_per_batch)
            return [self.tokenizer.decode(ids) for ids, _ in out]

        out = [
            guided.optimise(chem.canonical_smiles(rec.sequence, record=rec.id), rec.id, per[i][last].float().cpu(),
                            plan, _seed_for(plan.seed, rec.index), decode)
            for i, rec in enumerate(records)
        ]
        return Generated(model=self.name, records=out, errors=errors)

    def _harvest(
        self, rec: Record, hidden: torch.Tensor, plan: SamplingPlan, tokens_per_batch: int | None
    ) -> GeneratedRecord:
        """Rounds of perturbed decodes of one seed until the request is met or the rounds are spent."""
        record_seed = _seed_for(plan.seed, rec.index)
        noise_stream = torch.Generator().manual_seed(record_seed)  # round r continues round r-1's draws
        harvest = Harvest(rec.sequence, plan.num_molecules)
        rounds = 1 if plan.deterministic else plan.max_rounds
        n = plan.num_molecules
        for r in range(rounds):
            noise = torch.randn((n, *hidden.shape), generator=noise_stream)
            rows = list(hidden[None] + plan.scaled_radius * noise)
            decoded = self._decode_rows(
                rows,
                method=plan.decoder,
                beam_size=plan.beam_size,
                max_length=plan.max_length,
                length_penalty=0.0,
                tokens_per_batch=tokens_per_batch,
                generators=[torch.Generator().manual_seed(_seed_for(record_seed, r * n + j)) for j in range(n)],
                top_k=plan.top_k,
                top_p=plan.top_p,
                temperature=plan.temperature,
            )
            harvest.add_round([(self.tokenizer.decode(ids), score) for ids, score in decoded])
            if harvest.complete:
                break
        if not harvest.complete:
            logger.info("%s: %d of %d molecules found for record %r in %d rounds (%d samples)", self.name,
                        len(harvest.best), harvest.wanted, rec.id, harvest.rounds, harvest.samples)
        return harvest.record(rec.id)

    # ----- score ----------------------------------------------------------------------------
    @torch.no_grad()
    def token_log_probs(self, token_ids: list[list[int]], tokens_per_batch: int | None = None) -> list[np.ndarray]:
        """Teacher-forced log-probabilities of ``tokens + [end]`` given each SMILES' own encoding.

        The distribution is the one decoding samples from (restricted to the
        tokens a SMILES can contain, plus the end token).
        """
        tok = self.tokenizer
        ok = decoding.allowed_mask(self.network.config.vocab_size, tok.allowed_output_ids(), self._device)

        def run(batch: list[int]) -> dict[int, np.ndarray]:
            rows = [token_ids[i] for i in batch]
            enc, enc_mask = pad_ids(rows, tok.pad_id, self._device)
            dec, _ = pad_ids([[tok.bos_id, *r] for r in rows], tok.pad_id, self._device)
            labels, label_mask = pad_ids([[*r, tok.eos_id] for r in rows], tok.pad_id, self._device)
            logits = self.network(enc, enc_mask, dec)
            logp = torch.log_softmax(logits.float().masked_fill(~ok, float("-inf")), dim=-1)
            picked = logp.gather(-1, labels[..., None])[..., 0]
            return {i: picked[j, label_mask[j]].cpu().numpy() for j, i in enumerate(batch)}

        results = self._batched([len(t) for t in token_ids], run, tokens_per_batch)
        return [results[i] for i in range(len(token_ids))]

    def score(
        self,
        inputs: Inputs,
        method: str = "loglik",
        *,
        canonicalize: bool = True,
        tokens_per_batch: int | None = None,
        on_invalid: OnInvalid = "error",
    ) -> Scores:
        """Log-likelihood of each SMILES under the model, teacher-forced on its own encoding.

        Args:
            method: ``"loglik"`` (sum over the tokens and the end token, in nats)
                or ``"loglik_per_token"`` (its mean).
        """
        method = self.spec.score_method(method)
        records, token_ids, _, errors = self._tokens(
            inputs, canonicalize=canonicalize, on_invalid=on_invalid, limit=self.max_length - 1
        )
        per_token = self.token_log_probs(token_ids, tokens_per_batch) if token_ids else []
        reduce = np.sum if method == "loglik" else np.mean
        values = np.asarray([float(reduce(lp)) for lp in per_token], dtype=np.float64)
        return Scores(model=self.name, method=method, ids=[r.id for r in records], scores=values, errors=errors)


def default_spec() -> ModelSpec:
    """The registered ``megamolbart`` card (for models built in memory)."""
    from . import specs

    return specs()[0]


def load_megamolbart(
    spec: ModelSpec, path: Path, device: str = "cpu", dtype: str | None = None, **options: Any
) -> MegaMolBARTModel:
    """The plugin's loader (``bionemo_lite.load("megamolbart", weights=...)``).

    Reads a ``.nemo`` archive (or an extracted one) or this project's
    safetensors export; the architecture comes from the checkpoint.

    Raises:
        CheckpointError: unreadable file, unsupported architecture, or
            missing/unknown tensors (all listed).
    """
    if options:
        raise TypeError(f"megamolbart takes no loading options; got {', '.join(sorted(options))}")
    ckpt = read_checkpoint(Path(path))
    network = build_network(ckpt)
    cfg = network.config
    published = dict(spec.config)
    shape = {"num_layers": cfg.num_layers, "hidden_size": cfg.hidden_size,
             "num_attention_heads": cfg.num_attention_heads, "ffn_hidden_size": cfg.ffn_hidden_size}
    differs = {k: v for k, v in shape.items() if k in published and published[k] != v}
    if differs:
        logger.warning(
            "%s: checkpoint %s has a different shape from the published %s (%s); loading it as found",
            spec.name, ckpt.source, spec.name, ", ".join(f"{k}={v}" for k, v in differs.items()),
        )
    return MegaMolBARTModel(spec, network, ckpt.tokenizer, device=device, dtype=dtype)
