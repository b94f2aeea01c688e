"""What ``generate`` accepts and what it keeps: option checks and the per-seed harvest.

Sampling around a seed returns invalid strings and repeats, so one round of
``num_molecules`` samples usually yields fewer unique valid molecules than
asked for. `generate` therefore draws further rounds until the request is met
or ``max_rounds`` rounds (at most ``max_rounds * num_molecules`` samples) are
spent, and says in ``stats`` how far it got (``requested``, ``rounds``,
``shortfall``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bionemo_lite import chem
from bionemo_lite.batching import check_tokens_per_batch
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.options import check_float, check_int, check_seed, check_temperature
from bionemo_lite.results import GeneratedRecord

GENERATE_METHODS: tuple[str, ...] = ("greedy-perturbate", "topkp-perturbate", "beam-search-perturbate")
DECODER_OF: dict[str, str] = {
    "greedy-perturbate": "greedy",
    "topkp-perturbate": "sample",
    "beam-search-perturbate": "beam",
}
MAX_MOLECULES = 1000
# MolMIM's published range for the noise scale; beyond 2 the tiny and the released models alike
# decode almost nothing valid (their hiddens are of order 1).
MAX_RADIUS = 2.0
MAX_BEAMS = 100
MAX_ROUNDS = 20
DEFAULT_ROUNDS = 5


@dataclass(frozen=True)
class SamplingPlan:
    """The checked options of one ``generate`` call."""

    num_molecules: int
    scaled_radius: float
    decoder: str
    top_k: int | None
    top_p: float | None
    temperature: float
    beam_size: int
    seed: int | None
    max_length: int | None
    max_rounds: int

    @property
    def deterministic(self) -> bool:
        """Without noise, greedy and beam decoding give the same molecule every time: one round is enough."""
        return self.scaled_radius == 0.0 and self.decoder != "sample"


def plan_sampling(
    *,
    method: str,
    num_molecules: object,
    scaled_radius: object,
    top_k: object,
    top_p: object,
    temperature: object,
    beam_size: object,
    seed: object,
    max_length: object,
    max_rounds: object,
    tokens_per_batch: object,
    vocab_size: int,
    positions: int,
) -> SamplingPlan:
    """Check every ``generate`` option before any work.

    Args:
        vocab_size: tokens decoding may emit (the bound of ``top_k``).
        positions: most tokens the decoder can emit (the bound of ``max_length``).

    Raises:
        InvalidInputError: naming the option and the accepted range.
    """
    if method not in GENERATE_METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(GENERATE_METHODS)}; got {method!r}")
    check_tokens_per_batch(tokens_per_batch)  # type: ignore[arg-type]
    return SamplingPlan(
        num_molecules=check_int("num_molecules", num_molecules, low=1, high=MAX_MOLECULES),
        scaled_radius=check_float("scaled_radius", scaled_radius, low=0.0, high=MAX_RADIUS),
        decoder=DECODER_OF[method],
        top_k=None if top_k is None else check_int("top_k", top_k, low=1, high=vocab_size),
        top_p=None if top_p is None else check_float("top_p", top_p, low=0.0, high=1.0, low_open=True),
        temperature=check_temperature(temperature),
        beam_size=check_int("beam_size", beam_size, low=1, high=MAX_BEAMS),
        seed=check_seed(seed),
        max_length=None if max_length is None else check_int("max_length", max_length, low=1, high=positions),
        max_rounds=check_int("max_rounds", max_rounds, low=1, high=MAX_ROUNDS),
    )


@dataclass
class Harvest:
    """The unique valid molecules of one seed's samples, in the order they were drawn."""

    seed: str
    wanted: int
    best: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    invalid: int = 0
    same_as_seed: int = 0
    rounds: int = 0

    @property
    def complete(self) -> bool:
        return len(self.best) >= self.wanted

    def add_round(self, decoded: list[tuple[str, float]]) -> None:
        """Look at one round's samples in order, stopping at the one that completes the request."""
        self.rounds += 1
        for text, score in decoded:
            if self.complete:
                return
            self.samples += 1
            canon = chem.try_canonical(text) if text else None
            if canon is None:
                self.invalid += 1
                continue
            self.same_as_seed += canon == self.seed
            self.best[canon] = max(score, self.best.get(canon, float("-inf")))

    def record(self, record_id: str) -> GeneratedRecord:
        """The molecules (most likely first) with their properties and the counts behind them."""
        ranked = sorted(self.best.items(), key=lambda kv: (-kv[1], kv[0]))
        mols = [chem.parse_smiles(s) for s, _ in ranked]
        valid = self.samples - self.invalid
        return GeneratedRecord(
            id=record_id,
            seed=self.seed,
            generated=[s for s, _ in ranked],
            scores=[float(v) for _, v in ranked],
            properties=chem.properties(mols, reference=chem.parse_smiles(self.seed)),
            stats={
                "requested": self.wanted,
                "samples": self.samples,
                "valid": valid,
                "invalid": self.invalid,
                "duplicates": valid - len(self.best),
                "unique": len(self.best),
                "same_as_seed": self.same_as_seed,
                "rounds": self.rounds,
                "shortfall": max(0, self.wanted - len(self.best)),
            },
        )
