"""Training and fine-tuning MegaMolBART as a SMILES autoencoder.

The task is MegaMolBART's pre-training task: the encoder reads a SMILES (its
tokens optionally masked with ``<MASK>`` and/or written in a random atom order),
the decoder rebuilds the canonical SMILES token by token (teacher forcing,
cross-entropy). `train_autoencoder` runs it on a list of SMILES, with warm-up
and cosine learning-rate decay, gradient clipping, a time limit and early
stopping once greedy reconstruction reaches a target accuracy.

    >>> model = MegaMolBARTModel.from_config(
    ...     {"hidden_size": 64, "num_layers": 2, "decoder_num_layers": 2, "ffn_hidden_size": 256,
    ...      "num_attention_heads": 4, "max_position_embeddings": 64})
    >>> report = train_autoencoder(model, smiles, steps=400, lr=5e-3, target_accuracy=0.95)
    >>> report.accuracy, report.stopped

``dtype="float64"`` trains a float64 copy of the weights and casts the result
back to the model's dtype. The float32 result of a run depends on the CPU: the
summation order of a GEMM differs between CPUs (blocking, vector width), and
~200 optimizer steps amplify those 1e-7 differences into different weights
(and a different early-stop step). In float64 the same differences start near
1e-16 and stay far below float32's resolution, so every CPU ends with the same
float32 weights.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from bionemo_lite import chem
from bionemo_lite.errors import InvalidInputError

from .model import MegaMolBARTModel, pad_ids

logger = logging.getLogger(__name__)


@dataclass
class TrainingReport:
    """What a training run did.

    Attributes:
        steps: optimizer steps taken.
        seconds: wall time of the run (evaluations included).
        losses: training loss (mean token cross-entropy) of every step.
        evaluations: ``(step, greedy reconstruction accuracy)`` at each evaluation.
        stopped: why the run ended: ``"steps"``, ``"time"`` or ``"target"``.
    """

    steps: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    stopped: str = "steps"

    @property
    def accuracy(self) -> float | None:
        """The last measured reconstruction accuracy."""
        return self.evaluations[-1][1] if self.evaluations else None


def reconstruction_accuracy(
    model: MegaMolBARTModel, smiles: Sequence[str], method: str = "greedy", beam_size: int = 5
) -> float:
    """Share of molecules whose hiddens decode back to the same canonical SMILES."""
    targets = [chem.canonical_smiles(s, record=i) for i, s in enumerate(smiles)]
    hiddens, mask = model.encode(list(targets))
    decoded = model.decode(hiddens, mask, method=method, beam_size=beam_size)
    hits = sum(chem.try_canonical(d) == t for d, t in zip(decoded, targets) if d)
    return hits / len(targets)


def _random_smiles(smiles: str, rng: random.Random) -> str:
    from rdkit import Chem

    mol = chem.parse_smiles(smiles)
    return Chem.MolToRandomSmilesVect(mol, 1, randomSeed=rng.randrange(1, 2**31 - 1))[0]


def train_autoencoder(
    model: MegaMolBARTModel,
    smiles: Sequence[str],
    *,
    steps: int = 1000,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    warmup_steps: int = 50,
    min_lr_ratio: float = 0.1,
    mask_prob: float = 0.0,
    augment_prob: float = 0.0,
    label_smoothing: float = 0.0,
    grad_clip: float = 1.0,
    seed: int = 0,
    max_seconds: float | None = None,
    target_accuracy: float | None = None,
    eval_every: int = 100,
    on_step: Callable[[int, float], None] | None = None,
    dtype: str | None = None,
) -> TrainingReport:
    """Train (or fine-tune) `model` in place to reconstruct `smiles`.

    Args:
        smiles: training molecules; each is validated and canonicalised.
        steps: most optimizer steps.
        mask_prob: chance that an encoder token is replaced by ``<MASK>``.
        augment_prob: chance that the encoder sees a random-order SMILES of the
            molecule instead of the canonical one (the decoder target stays canonical).
        max_seconds: stop after this much wall time.
        target_accuracy: stop once greedy reconstruction of `smiles` reaches it.
            Greedy decoding is only run (at most every `eval_every` steps, and at
            the end) once the teacher-forced predictions of the training steps
            reproduce that share of the molecules exactly: when every next token
            is the argmax under teacher forcing, greedy decoding rebuilds the
            molecule, so the cheap check predicts the expensive one.
        on_step: called with ``(step, loss)`` after every step.
        dtype: train in this dtype (``"float64"``, ``"float32"`` or ``"bfloat16"``; default: the
            model's), then cast the weights back to the model's dtype. The last evaluation
            (the report's ``accuracy``) is of the cast weights, the model that is returned.

    Returns:
        A `TrainingReport`; the network is left in eval mode.

    Raises:
        InvalidInputError: a bad SMILES (naming its index), a float16 model or `dtype`.
    """
    if model.dtype == "float16" or dtype in ("float16", "fp16", "half"):
        raise InvalidInputError("train in float32, float64 or bfloat16, not float16 (no loss scaling here)")
    train_dtypes = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
    if dtype is not None and dtype not in train_dtypes:
        raise InvalidInputError(f"dtype must be one of {', '.join(train_dtypes)}; got {dtype!r}")
    if not smiles:
        raise InvalidInputError("no training SMILES were given")
    tok = model.tokenizer
    targets = [chem.canonical_smiles(s, record=i) for i, s in enumerate(smiles)]
    target_ids = [tok.encode(t, record=i) for i, t in enumerate(targets)]
    too_long = [i for i, t in enumerate(target_ids) if len(t) + 1 > model.max_length]
    if too_long:
        raise InvalidInputError(f"longer than the model's {model.max_length - 1} tokens", record=too_long[0])

    rng = random.Random(seed)
    torch.manual_seed(seed)
    network = model.network
    device = next(network.parameters()).device
    model_dtype = next(network.parameters()).dtype
    train_dtype = model_dtype if dtype is None else train_dtypes[dtype]
    network.to(train_dtype)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    report = TrainingReport()
    start = time.perf_counter()
    order: list[int] = []
    exact = [False] * len(targets)  # last teacher-forced exact match of each molecule
    last_eval = -eval_every

    def encoder_ids(i: int) -> list[int]:
        ids = target_ids[i]
        if augment_prob > 0 and rng.random() < augment_prob:
            try:
                alt = tok.encode(_random_smiles(targets[i], rng))
                if len(alt) <= model.max_length:
                    ids = alt
            except InvalidInputError:
                pass  # a random form with a token outside the vocabulary: keep the canonical one
        if mask_prob > 0:
            ids = [tok.mask_id if rng.random() < mask_prob else t for t in ids]
        return ids

    def evaluate(step: int) -> float:
        network.eval()
        acc = reconstruction_accuracy(model, targets)
        report.evaluations.append((step, acc))
        logger.info("step %d: loss %.4f, reconstruction %.1f%%", step, report.losses[-1], 100 * acc)
        return acc

    try:
        for step in range(steps):
            if not order:
                order = list(range(len(targets)))
                rng.shuffle(order)
            batch, order = order[:batch_size], order[batch_size:]
            network.train()
            enc, enc_mask = pad_ids([encoder_ids(i) for i in batch], tok.pad_id, device)
            dec, _ = pad_ids([[tok.bos_id, *target_ids[i]] for i in batch], tok.pad_id, device)
            labels, label_mask = pad_ids([[*target_ids[i], tok.eos_id] for i in batch], tok.pad_id, device)
            logits = network(enc, enc_mask, dec)
            # a bfloat16 loss in float32; a float64 one stays float64 (a float32 loss would bring back the
            # CPU-dependent rounding that float64 training avoids)
            loss_logits = logits if logits.dtype == torch.float64 else logits.float()
            loss = F.cross_entropy(
                loss_logits[label_mask], labels[label_mask], label_smoothing=label_smoothing
            )
            with torch.no_grad():
                hit = (logits.argmax(-1) == labels) | ~label_mask
                for row, i in enumerate(batch):
                    exact[i] = bool(hit[row].all())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(network.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            report.steps = step + 1
            report.losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(report.steps, report.losses[-1])
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                report.stopped = "time"
                break
            if (
                target_accuracy is not None
                and sum(exact) >= target_accuracy * len(targets)
                and report.steps - last_eval >= eval_every
            ):
                last_eval = report.steps
                if evaluate(report.steps) >= target_accuracy:
                    report.stopped = "target"
                    break
    finally:  # an error mid-run still leaves the model in its own dtype
        network.eval()
        network.to(model_dtype)
    if target_accuracy is not None and (
        not report.evaluations or report.evaluations[-1][0] != report.steps or train_dtype != model_dtype
    ):
        evaluate(report.steps)  # after the cast: the accuracy of the weights returned
    report.seconds = time.perf_counter() - start
    return report
