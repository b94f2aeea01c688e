"""The compute budget of one request: what each verb costs, checked before any model work.

One HTTP request must not hold a model for minutes (PLL of 32 x 1,022 residues is
33 million residue-passes; a 1,022-residue fold with 64 recycles is 65 trunk passes
of O(L^3) work). Each verb's cost rule is one function below; `check_budget`
refuses a request over the service's budget with a 422 that states the cost, the
budget, the setting that raises it, and the batch job that runs the same work
without a budget (batch jobs checkpoint, resume and report per-record failures).

Units:
  * ``token-passes`` (embed, contacts, score, generate): residues (or SMILES tokens) the
    network reads, summed over its forward passes. ``BIONEMO_LITE_MAX_TOKEN_PASSES``.
  * ``residue^3-passes`` (fold): the folding trunk's triangle updates are O(L^3) per pass,
    so L^3 x trunk passes (recycles + 1). ``BIONEMO_LITE_MAX_FOLD_WORK``.

The rules count the model's own loops, not the wall time of one GPU: they are an
upper bound that is the same on every backend (in-process or Triton).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bionemo_lite.chains import split_chains
from bionemo_lite.errors import OverBudgetError
from bionemo_lite.mutations import normalize_mutation
from bionemo_lite.properties import guided_decodes
from bionemo_lite.records import Record
from bionemo_lite.spec import ModelSpec

if TYPE_CHECKING:
    from .schemas import (ContactsRequest, EmbedRequest, FinetuneRequest, FoldRequest, GenerateRequest,
                          PredictRequest, ScoreRequest)
    from .settings import Settings

TOKEN_PASSES = "token-passes"
FOLD_WORK = "residue^3-passes"
TOKEN_SETTING = "BIONEMO_LITE_MAX_TOKEN_PASSES"
FOLD_SETTING = "BIONEMO_LITE_MAX_FOLD_WORK"
DEFAULT_FOLD_PASSES = 4  # ESMFold's max_recycles (4 passes) and OpenFold's 3 recycles + 1
_MASK = re.compile(r"<mask>", re.IGNORECASE)
_POSITION = re.compile(r"\d+")


@dataclass(frozen=True)
class Cost:
    """What one request would cost, and how to run the same work as a batch job."""

    verb: str
    amount: int
    unit: str
    batch_command: str


def _lengths(spec: ModelSpec, records: Sequence[Record], truncate: bool) -> list[int]:
    """Residues per record as the model sees them (cut to its maximum under ``truncate``)."""
    return [min(len(r.sequence), spec.max_length) if truncate else len(r.sequence) for r in records]


def _input_file(spec: ModelSpec) -> str:
    return "molecules.smi" if spec.input_kind == "smiles" else "sequences.fasta"


def embed_cost(spec: ModelSpec, body: EmbedRequest) -> Cost:
    """One pass over every record (two with ``include_hiddens``): residues x passes."""
    passes = 2 if body.include_hiddens else 1
    return Cost("embed", passes * sum(_lengths(spec, body.records(), body.truncate)), TOKEN_PASSES,
                f"bionemo-lite embed {spec.name} {_input_file(spec)} -o embeddings.parquet")


def contacts_cost(spec: ModelSpec, body: ContactsRequest) -> Cost:
    """One pass over every record: residues."""
    return Cost("contacts", sum(_lengths(spec, body.records(), body.truncate)), TOKEN_PASSES,
                f"bionemo-lite contacts {spec.name} {_input_file(spec)} -o contacts.h5")


def score_cost(spec: ModelSpec, body: ScoreRequest) -> Cost:
    """PLL masks each residue in turn: L passes of L tokens, sum of L^2. Masked marginals: one
    pass per mutated position (L x positions); wt_marginals and other methods: one pass (L)."""
    method = spec.score_method(body.method) if spec.score_methods else body.method
    lengths = _lengths(spec, body.records(), body.truncate)
    command = f"bionemo-lite score {spec.name} {_input_file(spec)} -o scores.parquet"
    if method:
        command += f" --method {method}"
    if body.mutations:
        command += " --mutations mutations.txt"
    if method == "pll" and spec.input_kind == "protein":
        amount = sum(n * n for n in lengths)
    elif method == "masked_marginals" and body.mutations:
        positions = {p for m in body.mutations for p in _POSITION.findall(normalize_mutation(m))}
        amount = sum(n * min(len(positions), n) for n in lengths)
    else:
        amount = sum(lengths)
    return Cost("score", amount, TOKEN_PASSES, command)


def generate_cost(spec: ModelSpec, body: GenerateRequest) -> Cost:
    """Per sample: proteins fill one ``<mask>`` per pass and are then PLL-scored
    ((masks + L) passes of L tokens); SMILES decode up to the model's maximum length, one token a step.
    Guided generation (``algorithm="cma-es"``) decodes ``iterations x particles`` molecules per seed."""
    options = body.family_options()
    guided = guided_decodes(options)
    samples = guided or body.num_samples or 1
    amount = 0
    for record in body.records():
        if spec.input_kind == "smiles":
            amount += samples * spec.max_length
        else:
            masks = len(_MASK.findall(record.sequence))
            residues = len(_MASK.sub("X", record.sequence))
            amount += samples * (masks + residues) * residues
    command = f"bionemo-lite generate {spec.name} {_input_file(spec)} -o generated.parquet"
    if guided:  # the options that set a guided search's cost
        command += "".join(f" --option {k}={options[k]}" for k in ("algorithm", "iterations", "particles")
                           if k in options)
    if body.num_samples or not guided:
        command += f" --num-samples {body.num_samples or samples}"
    return Cost("generate", amount, TOKEN_PASSES, command)


def _default_fold_passes(spec: ModelSpec) -> int:
    config = spec.config or {}
    if isinstance(config.get("max_recycles"), int):  # ESMFold counts every pass
        return int(config["max_recycles"])
    if isinstance(config.get("num_recycles"), int):  # OpenFold counts the passes after the first
        return int(config["num_recycles"]) + 1
    return DEFAULT_FOLD_PASSES


def fold_cost(spec: ModelSpec, body: FoldRequest) -> Cost:
    """L^3 x trunk passes (recycles + 1; the model's default when not given), L = residues of all chains."""
    residues = sum(len(chain) for _, chain in split_chains(body.sequence, body.id or "sequence"))
    passes = body.num_recycles + 1 if body.num_recycles is not None else _default_fold_passes(spec)
    command = f"bionemo-lite fold {spec.name} sequences.fasta -o structures/"
    if body.num_recycles is not None:
        command += f" --num-recycles {body.num_recycles}"
    return Cost("fold", residues**3 * passes, FOLD_WORK, command)


def check_budget(cost: Cost, settings: Settings) -> None:
    """Refuse a request that costs more than the service's budget for one request.

    Raises:
        OverBudgetError: (HTTP 422) naming the cost, the budget, its setting and the batch command.
    """
    budget, setting = ((settings.max_fold_work, FOLD_SETTING) if cost.unit == FOLD_WORK
                       else (settings.max_token_passes, TOKEN_SETTING))
    if cost.amount > budget:
        raise OverBudgetError(cost.verb, cost.amount, budget, cost.unit, setting, cost.batch_command)


# ---- fine-tuning (bionemo_lite.finetune): predict is one pass per record, like embed; a fine-tune's passes
def predict_cost(spec: ModelSpec, body: PredictRequest) -> Cost:
    """One pass of the base encoder over every record."""
    return Cost("predict", sum(_lengths(spec, body.records(), body.truncate)), TOKEN_PASSES,
                f"bionemo-lite predict {spec.name} {_input_file(spec)} -o predictions.parquet")


LORA_PASSES_PER_EPOCH = 4  # forward + backward (~2 passes) over train records, plus the validation pass: bounded by 4


def finetune_cost(spec: ModelSpec, body: FinetuneRequest) -> Cost:
    """``head``: one embedding pass over the records (the head's epochs read cached features).
    ``lora``: up to ``max_epochs`` epochs of forward, backward and validation passes, plus the test pass."""
    residues = sum(_lengths(spec, body.records(), False))
    passes = 1 if body.method == "head" else LORA_PASSES_PER_EPOCH * body.max_epochs + 2
    return Cost("finetune", passes * residues, TOKEN_PASSES,
                f"bionemo-lite finetune {spec.name} data.csv --target {body.target} --task {body.task} "
                f"--method {body.method} -o {body.name}/ --name {body.name}")
