"""`ESM2Model`: the verbs (embed, score, generate) plus logits and contacts on
top of `ESM2Network`.

Every verb validates its input with the core (`prepare_proteins`), groups work
into length-sorted token-budget batches, and runs them through `run_batches`,
so an out-of-memory batch is split and retried and only a record that does
not fit even alone fails. Inference runs under `torch.inference_mode()`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from bionemo_lite.batching import check_tokens_per_batch, run_batches, token_budget_batches
from bionemo_lite.cancellation import raise_if_cancelled
from bionemo_lite.pooling import Pooling
from bionemo_lite.errors import BionemoLiteError, CheckpointError, InvalidInputError
from bionemo_lite.model import BioModel
from bionemo_lite.packing import PACK_MULTIPLE, Packing, pack_rows
from bionemo_lite.mutations import Mutation, parse_mutations
from bionemo_lite.records import Inputs, LengthPolicy, Record, prepare_proteins
from bionemo_lite.results import Embeddings, Generated, GeneratedRecord, RecordError, Scores
from bionemo_lite.spec import ModelSpec
from bionemo_lite.windows import WindowPlan, Windows, embed_records_windowed

from .alphabet import ALPHABET, Alphabet
from .generation import (
    MaskedSeed,
    check_sampling,
    draw,
    fill_order,
    parse_masked_inputs,
    sample_generator,
)
from .network import ESM2Network, Esm2Encoding

T = TypeVar("T")
# packed tokens on the device, their layout, and (CUDA) the event their side-stream copy records
PreparedBatch = tuple[torch.Tensor, Packing, Any]
SPECIAL_TOKENS = 2  # BOS + EOS around every sequence


def _pad_stack(rows: Sequence[torch.Tensor], pad: int) -> torch.Tensor:
    width = max(int(r.shape[0]) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row
    return out


class ESM2Model(BioModel):
    """A loaded ESM-2 model.

    Attributes:
        network: the `ESM2Network` (``network(tokens)`` is traceable for ONNX export).
        alphabet: token <-> id mapping (`Alphabet`).
        checkpoint_path: where the weights were read from.
        checkpoint_format: ``"fair-esm"`` or ``"huggingface"``.

    Example:
        >>> model = bionemo_lite.load("esm2_t33_650M_UR50D", weights="esm2_t33_650M_UR50D.pt")
        >>> model.embed(["MKTAYIAKQR"], layer=[-1, 20], pooling="mean").by_layer[33].shape
        (1, 1280)
        >>> model.score("MKTAYIAKQR", method="masked_marginals", mutations=["K2A", "K2A:T3S"]).scores
    """

    alphabet: Alphabet = ALPHABET

    def __init__(
        self,
        spec: ModelSpec,
        network: ESM2Network,
        *,
        device: str | torch.device = "cpu",
        config: Mapping[str, Any] | None = None,
        checkpoint_path: Path | None = None,
        checkpoint_format: str | None = None,
        packing: bool = True,
    ):
        dtype = next(network.parameters()).dtype
        super().__init__(spec, str(device), str(dtype).removeprefix("torch."), dict(config or spec.config))
        self.network = network
        self.checkpoint_path = checkpoint_path
        self.checkpoint_format = checkpoint_format
        self._device = torch.device(device)
        self.packing = packing
        # Prepare the next embed batch in a background thread while this one computes (None: on CUDA only,
        # where the copy overlaps the GPU's work; on a CPU the thread would take a core from the GEMMs).
        self.prefetch: bool | None = None
        self._copy_stream: Any = None

    @property
    def packed(self) -> bool:
        """Whether batches run packed (no padding): the default with fast numerics; the reference
        numerics keep fair-esm's padded arithmetic, contacts (attention maps) are always padded."""
        return self.packing and self.network.numerics == "fast"

    @property
    def num_layers(self) -> int:
        """Transformer layers (layer indices run 0..num_layers; 0 is the embedding layer)."""
        return int(self.config["num_layers"])

    @property
    def has_contacts(self) -> bool:
        """Whether contact-regression weights were loaded (needed by `contacts`)."""
        return bool(self.network.has_contact_weights)

    def close(self) -> None:
        """Drop the network and release accelerator memory."""
        self.network = None  # type: ignore[assignment]
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def onnx_encoder(self, layers: int | Sequence[int] = -1) -> Any:
        """The encoder as a traceable module for ONNX export (see `bionemo_lite.zoo.esm2.onnx`)."""
        from .onnx import esm2_onnx_encoder

        return esm2_onnx_encoder(self, layers)

    # ------------------------------------------------------------ tokens and batches

    def tokenize(self, sequences: Sequence[str]) -> torch.Tensor:
        """``[B, max_len + 2]`` int64 token ids: BOS + residues + EOS, padded with id 1 (CPU tensor)."""
        return ALPHABET.batch_tokens(list(sequences))

    def _encode(
        self,
        tokens: torch.Tensor,
        layers: Sequence[int] = (),
        *,
        need_logits: bool = False,
        need_attentions: bool = False,
    ) -> Esm2Encoding:
        # Skip the key-padding mask when nothing is padded: the fused kernels run faster without one.
        padded = bool(tokens.eq(ALPHABET.pad_idx).any())
        return self.network.encode(
            tokens.to(self._device, non_blocking=True),
            layers,
            need_logits=need_logits,
            need_attentions=need_attentions,
            mask_padding=padded,
        )

    def _token_rows(self, sequences: Sequence[str]) -> list[torch.Tensor]:
        """BOS + residues + EOS per sequence, unpadded (CPU int64 rows)."""
        bos, eos = ALPHABET.cls_idx, ALPHABET.eos_idx
        return [torch.tensor([bos, *ALPHABET.encode(s, record=i), eos], dtype=torch.long) for i, s in enumerate(sequences)]

    def _encode_packed(
        self, rows: Sequence[torch.Tensor], layers: Sequence[int] = (), *, need_logits: bool = False,
        prepared: PreparedBatch | None = None,
    ) -> tuple[Esm2Encoding, Packing]:
        tokens, packing, ready = prepared if prepared is not None else (*self._pack(rows), None)
        if ready is not None:  # copied on the side stream: the compute stream waits for it, then owns it
            current = torch.cuda.current_stream(self._device)
            current.wait_event(ready)
            tokens.record_stream(current)
        return self.network.encode_packed(tokens, packing, layers, need_logits=need_logits), packing

    def _prepare_packed(self, records: list[Record]) -> PreparedBatch:
        """A packed batch's tokens on the device: `run_batches`' ``prepare``, one batch ahead. On CUDA the
        pinned host-to-device copy runs on a side stream, so it overlaps the current batch's kernels."""
        rows = self._token_rows([r.sequence for r in records])
        if self._device.type != "cuda":
            return (*self._pack(rows), None)
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self._device)
        with torch.cuda.stream(self._copy_stream):
            tokens, packing = self._pack(rows)
            ready = self._copy_stream.record_event()
        return tokens, packing, ready

    def _pack(self, rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, Packing]:
        # Reduced precision on a CPU runs oneDNN GEMMs, which build a kernel per new shape: round the
        # batch's token count so that shapes repeat (`pack_rows`); float32 (MKL) and CUDA need not.
        multiple = PACK_MULTIPLE if self._device.type == "cpu" and self.dtype != "float32" else None
        return pack_rows(rows, self._device, multiple_of=multiple, filler_token=ALPHABET.pad_idx)

    @property
    def prefetching(self) -> bool:
        """Whether embed batches are prepared one ahead (`prefetch`; None: packed on CUDA)."""
        if self.prefetch is None:
            return self.packed and self._device.type == "cuda"
        return self.prefetch and self.packed

    def _log_probs_packed(self, rows: Sequence[torch.Tensor], positions: Sequence[int]) -> np.ndarray:
        """`_log_probs_at` over packed rows (the LM head runs on the picked tokens only)."""
        enc, packing = self._encode_packed(rows, [self.num_layers])
        flat = [packing.offsets[k] + p for k, p in enumerate(positions)]
        picked = enc.hidden[self.num_layers][torch.tensor(flat, device=self._device)]
        return torch.log_softmax(self.network.lm_head(picked).float(), dim=-1).cpu().numpy()

    def _logits_rows(self, sequences: Sequence[str]) -> list[np.ndarray]:
        """``[L_i + 2, vocab]`` float32 logits per sequence (packed or padded)."""
        with torch.inference_mode():
            if self.packed:
                enc, packing = self._encode_packed(self._token_rows(sequences), need_logits=True)
                assert enc.logits is not None
                return [t.numpy() for t in packing.split(enc.logits.float().cpu())]
            logits = self._encode(self.tokenize(sequences), need_logits=True).logits
            assert logits is not None
            out = logits.float().cpu().numpy()
        return [out[k, : len(s) + SPECIAL_TOKENS] for k, s in enumerate(sequences)]

    def _log_probs_at(self, tokens: torch.Tensor, positions: Sequence[int]) -> np.ndarray:
        """``[B, vocab]`` log-probabilities at one position per row (LM head only where needed)."""
        enc = self._encode(tokens, [self.num_layers])
        hidden = enc.hidden[self.num_layers]
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        picked = hidden[rows, torch.as_tensor(list(positions), device=hidden.device)]
        return torch.log_softmax(self.network.lm_head(picked).float(), dim=-1).cpu().numpy()

    def _batched(
        self, lengths: Sequence[int], run: Callable[[list[int]], Mapping[int, T]], tokens_per_batch: int | None
    ) -> tuple[dict[int, T], dict[int, str]]:
        batches = token_budget_batches(lengths, tokens_per_batch, SPECIAL_TOKENS, packed=self.packed)
        return run_batches(batches, run)

    @staticmethod
    def _all_or_raise(records: Sequence[Record], results: Mapping[int, T], failures: Mapping[int, str]) -> list[T]:
        if failures:
            detail = "; ".join(f"{records[i].id!r}: {why}" for i, why in sorted(failures.items()))
            raise BionemoLiteError(f"some records could not be computed: {detail}")
        return [results[i] for i in range(len(records))]

    # ------------------------------------------------------------ embed

    def embed(
        self,
        inputs: Inputs,
        layer: int | Sequence[int] = -1,
        pooling: str = "mean",
        *,
        on_too_long: LengthPolicy = "error",
        tokens_per_batch: int | None = None,
    ) -> Embeddings:
        """Embed protein sequences.

        Args:
            inputs: a sequence, a list, ``{id: sequence}``, ``(id, sequence)`` pairs or `Record`s.
            layer: one layer or several; 0 = token embeddings, ``num_layers`` (or
                -1) = the last layer after its final LayerNorm; negatives count from the end.
            pooling: ``"mean"`` over residues (BOS, EOS and padding excluded),
                ``"bos"`` (the BOS token) or ``"per_residue"`` (``[L_i, D]`` per record).
            on_too_long: ``"error"``, ``"truncate"`` or ``"window"`` / ``"window:STRIDE"`` for
                sequences over 1022 residues (windows of 1022 every STRIDE residues, default 511, each
                residue taken from the window it is most central in; ``bos``: the first window's BOS;
                see `bionemo_lite.windows`).
            tokens_per_batch: token budget per batch (default 4096): real tokens when packed (the
                default), padded ones (``batch * longest``) otherwise.

        Returns:
            `Embeddings` in input order; truncated ids in ``truncated``, windowed ones (with their
            windows) in ``windowed``, records that ran out of memory even alone in ``errors``.
        """
        return embed_records_windowed(
            self.name,
            inputs,
            self._embed_batch,
            num_layers=self.num_layers,
            max_length=self.max_length,
            layer=layer,
            pooling=pooling,
            on_too_long=on_too_long,
            tokens_per_batch=tokens_per_batch,
            extra_tokens=SPECIAL_TOKENS,
            poolings=self.spec.poolings,
            packed=self.packed,
            prepare=self._prepare_packed if self.prefetching else None,
        )

    def _embed_batch(
        self, records: list[Record], layers: tuple[int, ...], pooling: Pooling, prepared: PreparedBatch | None = None
    ) -> list[dict[int, np.ndarray]]:
        lengths = torch.tensor([len(r.sequence) for r in records], device=self._device)
        with torch.inference_mode():
            if self.packed:
                rows = [] if prepared is not None else self._token_rows([r.sequence for r in records])
                enc, packing = self._encode_packed(rows, layers, prepared=prepared)
                hidden = {lay: packing.pad(enc.hidden[lay]) for lay in layers}  # [B, longest + 2, D] for pooling
            else:
                enc = self._encode(self.tokenize([r.sequence for r in records]), layers)
                hidden = enc.hidden
            width = next(iter(hidden.values())).shape[1]
            positions = torch.arange(width, device=self._device)
            residues = (positions[None, :] >= 1) & (positions[None, :] <= lengths[:, None])
            pooled = {lay: pooling.torch(hidden[lay], residues, bos_index=0) for lay in layers}
        return [{lay: pooled[lay][i] for lay in layers} for i in range(len(records))]

    # ------------------------------------------------------------ logits and contacts

    def _whole_records(self, inputs: Inputs, on_too_long: LengthPolicy, what: str) -> list[Record]:
        """The records for a verb read in one piece: a window policy is refused for the records it would window."""
        records, _ = prepare_proteins(inputs, self.max_length, on_too_long)
        for r in records:
            if len(r.sequence) > self.max_length:
                raise InvalidInputError(
                    f"{what} are not computed through windows: the sequence has {len(r.sequence)} residues, "
                    f"more than the model's maximum of {self.max_length}; use on_too_long='truncate' or shorten it",
                    record=r.id,
                )
        return records

    def logits(
        self, inputs: Inputs, *, on_too_long: LengthPolicy = "error", tokens_per_batch: int | None = None
    ) -> list[np.ndarray]:
        """Masked-LM logits per record, ``[L_i + 2, 33]`` float32 (rows 0 and -1 are BOS and EOS)."""
        records = self._whole_records(inputs, on_too_long, "logits")

        def run(batch: list[int]) -> dict[int, np.ndarray]:
            return dict(zip(batch, self._logits_rows([records[i].sequence for i in batch])))

        results, failures = self._batched([len(r.sequence) for r in records], run, tokens_per_batch)
        return self._all_or_raise(records, results, failures)

    def contacts(
        self, inputs: Inputs, *, on_too_long: LengthPolicy = "error", tokens_per_batch: int | None = None
    ) -> list[np.ndarray]:
        """Contact probabilities per record, ``[L_i, L_i]`` float32.

        Raises:
            CheckpointError: the checkpoint came without contact-regression weights.
        """
        if not self.has_contacts:
            raise CheckpointError(
                f"{self.name}: no contact-regression weights were loaded; put "
                f"'{self.name}-contact-regression.pt' beside the .pt checkpoint (from "
                "https://dl.fbaipublicfiles.com/fair-esm/regression/) or use a Hugging Face "
                "checkpoint that holds esm.contact_head.*"
            )
        records = self._whole_records(inputs, on_too_long, "contacts")

        def run(batch: list[int]) -> dict[int, np.ndarray]:
            tokens = self.tokenize([records[i].sequence for i in batch])
            with torch.inference_mode():
                maps = self.network.predict_contacts(tokens.to(self._device)).float().cpu().numpy()
            out = {}
            for k, i in enumerate(batch):
                n = len(records[i].sequence)
                out[i] = maps[k, :n, :n]
            return out

        results, failures = self._batched([len(r.sequence) for r in records], run, tokens_per_batch)
        return self._all_or_raise(records, results, failures)

    # ------------------------------------------------------------ score

    def score(
        self,
        inputs: Inputs,
        method: str = "pll",
        mutations: str | Sequence[str] | None = None,
        *,
        on_too_long: LengthPolicy = "error",
        tokens_per_batch: int | None = None,
    ) -> Scores:
        """Score sequences or variants with the masked-language model.

        Args:
            inputs: for ``"pll"`` any number of sequences; for the marginal
                methods exactly one wild-type sequence.
            method: ``"pll"``: pseudo-log-likelihood, the sum over residues of
                log p(residue | that position masked); ``"masked_marginals"``:
                per mutation, the sum over its substitutions of
                log p(mt) - log p(wt) with that position masked;
                ``"wt_marginals"``: the same from the unmasked wild-type logits.
            mutations: for the marginal methods, strings like ``"A42G"``
                (1-based position) or ``"A42G:L50P"`` (scores summed); any
                case (``"a42g"`` is ``"A42G"``). Parsed by `bionemo_lite.mutations`.
            on_too_long: ``"error"``, ``"truncate"`` or ``"window"`` / ``"window:STRIDE"``: ``pll``
                reads each residue from the window it is most central in; the marginal methods read
                each substituted position from the window centred on it (`bionemo_lite.windows`).
            tokens_per_batch: token budget per batch (default 4096): real tokens when packed (the
                default), padded ones (``batch * longest``) otherwise.

        Returns:
            `Scores`: for ``pll`` one float per record (ids = record ids); for
            the marginal methods one float per mutation (ids and ``mutations``
            = the mutation strings, upper-cased, without spaces). Windowed records,
            with their windows, in ``windowed``.

        Raises:
            InvalidInputError: unknown method, several sequences for a marginal
                method, or a bad or repeated mutation (its text as ``record``),
                including a position past a truncation (``on_too_long="truncate"``).
        """
        method = self.spec.score_method(method)
        check_tokens_per_batch(tokens_per_batch)  # before any work: a bad budget is the caller's error
        records, truncated = prepare_proteins(inputs, self.max_length, on_too_long)
        plan = WindowPlan.for_policy(on_too_long, self.max_length)
        if method == "pll":
            if mutations is not None:
                raise InvalidInputError("mutations are only used by 'masked_marginals' and 'wt_marginals'")
            totals, failures = self._pll([r.sequence for r in records], tokens_per_batch, plan)
            kept = [i for i in range(len(records)) if i not in failures]
            return Scores(
                model=self.name,
                method=method,
                ids=[records[i].id for i in kept],
                scores=np.array([totals[i] for i in kept], dtype=np.float64),
                truncated=truncated,
                errors=[RecordError(records[i].id, records[i].index, why) for i, why in sorted(failures.items())],
                windowed=plan.windowed([records[i].id for i in kept], [len(records[i].sequence) for i in kept]),
            )
        if len(records) != 1:
            raise InvalidInputError(
                f"{method} scores mutations of one wild-type sequence; got {len(records)} sequences"
            )
        # Positions are checked against the wild type the model sees: past a truncation they get their own error.
        parsed = parse_mutations(mutations, records[0].sequence, truncated=bool(truncated))
        rows, failed, spans = self._marginal_rows(records[0].sequence, parsed, method, tokens_per_batch, plan)
        scores, ok, errors = [], [], []
        for i, mut in enumerate(parsed):
            lost = [s.position for s in mut.substitutions if s.position not in rows]
            if lost:
                errors.append(RecordError(mut.text, i, failed.get(lost[0], "not computed"), lost[0]))
                continue
            scores.append(
                sum(
                    float(rows[s.position][ALPHABET.get_idx(s.mt)]) - float(rows[s.position][ALPHABET.get_idx(s.wt)])
                    for s in mut.substitutions
                )
            )
            ok.append(mut.text)
        return Scores(
            model=self.name,
            method=method,
            ids=ok,
            scores=np.array(scores, dtype=np.float64),
            mutations=ok,
            truncated=truncated,
            errors=errors,
            windowed={records[0].id: Windows(plan.size, None, spans)} if len(records[0].sequence) > plan.size else {},
        )

    def _masked_rows(
        self, sequences: Sequence[str], jobs: Sequence[tuple[int, int]], tokens_per_batch: int | None
    ) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        """Log-probabilities at token position `p` of sequence `s` with `p` masked, per job ``(s, p)``."""
        base = {s: self._token_rows([sequences[s]])[0] for s in {s for s, _ in jobs}}

        def run(batch: list[int]) -> dict[int, np.ndarray]:
            rows = []
            for j in batch:
                s, p = jobs[j]
                row = base[s].clone()
                row[p] = ALPHABET.mask_idx
                rows.append(row)
            with torch.inference_mode():
                positions = [jobs[j][1] for j in batch]
                if self.packed:  # the masked copies packed: no padding between sequences of other lengths
                    lp = self._log_probs_packed(rows, positions)
                else:
                    lp = self._log_probs_at(_pad_stack(rows, ALPHABET.pad_idx), positions)
            return {j: lp[k] for k, j in enumerate(batch)}

        return self._batched([len(sequences[s]) for s, _ in jobs], run, tokens_per_batch)

    def _pll(
        self, sequences: Sequence[str], tokens_per_batch: int | None, plan: WindowPlan | None = None
    ) -> tuple[dict[int, float], dict[int, str]]:
        """Pseudo-log-likelihood per sequence; failures by sequence index.

        Each residue is masked in the window of `plan` it is most central in (a sequence that fits is
        its own one window); the jobs run over those windows, `owner` maps each window to its sequence.
        """
        plan = plan or WindowPlan.for_policy("error", self.max_length)
        pieces: list[str] = []
        owner: list[int] = []
        jobs: list[tuple[int, int]] = []
        for s, seq in enumerate(sequences):
            for (start, end), owned in plan.assignments(len(seq)):
                jobs += [(len(pieces), p - start + 1) for p in owned]  # token position: BOS first
                pieces.append(seq[start:end])
                owner.append(s)
        rows, failed_jobs = self._masked_rows(pieces, jobs, tokens_per_batch)
        failures = {owner[jobs[j][0]]: why for j, why in failed_jobs.items()}
        totals: dict[int, float] = {s: 0.0 for s in range(len(sequences)) if s not in failures}
        for j, row in rows.items():
            w, p = jobs[j]
            if owner[w] in totals:
                totals[owner[w]] += float(row[ALPHABET.get_idx(pieces[w][p - 1])])
        return totals, failures

    def _marginal_rows(
        self, sequence: str, mutations: list[Mutation], method: str, tokens_per_batch: int | None,
        plan: WindowPlan,
    ) -> tuple[dict[int, np.ndarray], dict[int, str], tuple[tuple[int, int], ...]]:
        """Log-probability rows by 1-based residue position, each from the window of `plan` centred on it
        (a sequence that fits is its own one window), and the windows used.

        Rows of a residue position p come from token position ``p - start`` of its window (BOS first).
        """
        positions = sorted({s.position for m in mutations for s in m.substitutions})
        span_of = {p: plan.centred(len(sequence), p - 1) for p in positions}
        spans = tuple(sorted(set(span_of.values())))
        pieces = [sequence[start:end] for start, end in spans]
        piece_of = {p: spans.index(span) for p, span in span_of.items()}
        if method == "wt_marginals":

            def run(batch: list[int]) -> dict[int, np.ndarray]:
                logits = self._logits_rows([pieces[k] for k in batch])
                return {k: torch.log_softmax(torch.from_numpy(lg), dim=-1).numpy() for k, lg in zip(batch, logits)}

            by_piece, failed_pieces = self._batched([len(piece) for piece in pieces], run, tokens_per_batch)
            return ({p: by_piece[piece_of[p]][p - span_of[p][0]] for p in positions if piece_of[p] in by_piece},
                    {p: failed_pieces[piece_of[p]] for p in positions if piece_of[p] in failed_pieces}, spans)
        jobs = [(piece_of[p], p - span_of[p][0]) for p in positions]
        rows, failed = self._masked_rows(pieces, jobs, tokens_per_batch)
        return ({positions[j]: row for j, row in rows.items()}, {positions[j]: why for j, why in failed.items()},
                spans)

    # ------------------------------------------------------------ generate

    def generate(
        self,
        inputs: Inputs,
        *,
        num_samples: int = 1,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        order: str = "random",
        tokens_per_batch: int | None = None,
    ) -> Generated:
        """Fill the ``<mask>`` positions of each seed by sampling one position at a time.

        Args:
            inputs: seeds with each position to generate written ``<mask>``
                (e.g. ``"MKT<mask><mask>AYIAK"``); every other character must be a valid residue.
            num_samples: sequences to draw per seed (1-1000).
            temperature: softmax temperature in [0.001, 100]; lower is greedier
                (below 0.001 nothing changes but float32 logits overflow; ``top_k=1`` is greedy).
            top_k: sample only among the k most likely residues (1-20).
            seed: makes the run reproducible (each sample has its own stream).
            order: ``"random"`` (a fresh random order per sample) or ``"left_to_right"``.
            tokens_per_batch: padded-token budget per batch of samples.

        Returns:
            `Generated`: per seed, the filled sequences (only the 20 standard
            amino acids are drawn) with their pseudo-log-likelihoods as
            ``scores``; ``stats`` holds the number of masks and the seed used.
        """
        allowed = torch.tensor(ALPHABET.residue_ids(), dtype=torch.long)
        opts = check_sampling(num_samples, temperature, top_k, seed, order, len(allowed))
        num_samples, temperature, top_k, order = opts.num_samples, opts.temperature, opts.top_k, opts.order
        check_tokens_per_batch(tokens_per_batch)
        seeds = parse_masked_inputs(inputs, self.max_length)
        run_seed = opts.seed if opts.seed is not None else secrets.randbits(63)
        filled: list[tuple[MaskedSeed, list[str]]] = []
        errors: list[RecordError] = []
        for masked in seeds:
            rec = masked.record
            base = self.tokenize([rec.sequence])[0]
            base[list(masked.masks)] = ALPHABET.mask_idx

            def run(batch: list[int], masked: MaskedSeed = masked, base: torch.Tensor = base) -> dict[int, str]:
                return self._fill(masked, base, batch, allowed, run_seed, temperature, top_k, order)

            results, failures = self._batched([len(rec.sequence)] * num_samples, run, tokens_per_batch)
            if failures:
                errors.append(RecordError(rec.id, rec.index, next(iter(failures.values()))))
                continue
            filled.append((masked, [results[k] for k in range(num_samples)]))
        flat = [seq for _, seqs in filled for seq in seqs]
        plls, _ = self._pll(flat, tokens_per_batch) if flat else ({}, {})
        out: list[GeneratedRecord] = []
        cursor = 0
        for masked, seqs in filled:
            scores = [plls.get(cursor + k, float("nan")) for k in range(len(seqs))]
            cursor += len(seqs)
            out.append(
                GeneratedRecord(
                    id=masked.record.id,
                    seed=masked.text,
                    generated=seqs,
                    scores=scores,
                    stats={"masked": len(masked.masks), "seed": run_seed},
                )
            )
        return Generated(model=self.name, records=out, errors=errors)

    def _fill(
        self,
        masked: MaskedSeed,
        base: torch.Tensor,
        samples: list[int],
        allowed: torch.Tensor,
        seed: int,
        temperature: float,
        top_k: int | None,
        order: str,
    ) -> dict[int, str]:
        """Fill every mask of `samples` copies of one seed; one network pass per masked position."""
        gens = [sample_generator(seed, masked.record.id, k) for k in samples]
        orders = [fill_order(masked.masks, order, g) for g in gens]
        tokens = base.repeat(len(samples), 1)
        rows = torch.arange(len(samples))
        with torch.inference_mode():
            for step in range(len(masked.masks)):
                raise_if_cancelled()  # one network pass per mask: a batch boundary
                positions = [o[step] for o in orders]
                log_probs = torch.from_numpy(self._log_probs_at(tokens, positions))
                tokens[rows, torch.tensor(positions)] = draw(log_probs, allowed, temperature, top_k, gens)
        n = len(masked.record.sequence)
        return {k: ALPHABET.decode(tokens[i, 1 : n + 1].tolist()) for i, k in enumerate(samples)}
