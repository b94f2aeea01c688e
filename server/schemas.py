"""Request and response bodies of the HTTP API (pydantic lives here only, at the edge).

Field names are the ones BioNeMo users know: ``sequences`` in, ``embeddings``
out; ``smis`` and ``num_molecules`` (MolMIM) are accepted as aliases;
``hiddens`` + ``mask`` for decoding; ``generated`` for new molecules.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from bionemo_lite.records import Record, as_records

MAX_ID_LENGTH = 256


class SequenceItem(BaseModel):
    """A record with an explicit id."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="Record id, unique in the request.")
    sequence: str = Field(description="Residues (one-letter codes) or a SMILES string.")


SequenceEntry = str | SequenceItem


class RecordsRequest(BaseModel):
    """A request carrying several records; plain strings get their 0-based index as id."""

    sequences: list[SequenceEntry] = Field(
        min_length=1,
        validation_alias=AliasChoices("sequences", "smis"),
        description='Strings, or {"id", "sequence"} objects. Alias: "smis".',
    )

    def records(self) -> list[Record]:
        """The records in input order; duplicate ids raise `InvalidInputError`."""
        items = [
            Record(item.id, item.sequence, i) if isinstance(item, SequenceItem) else Record(str(i), item, i)
            for i, item in enumerate(self.sequences)
        ]
        return as_records(items)


class EmbedRequest(RecordsRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"sequences": ["MKTAYIAKQR", {"id": "p2", "sequence": "GSHMLE"}],
                                          "layer": -1, "pooling": "mean"}]},
    )

    layer: int | list[int] = Field(-1, description="Layer index (0 = embedding layer, -1 = last) or a list of them.")
    pooling: str = Field("mean", description='"mean" (over residues, no BOS/EOS), "bos" or "per_residue".')
    truncate: bool = Field(False, description="Cut records longer than the model's maximum instead of refusing them.")
    include_hiddens: bool = Field(
        False,
        description="Also return BioNeMo's `hiddens` [N, T, D] (per-token states of the first layer, zero-padded) "
        "and `mask` [N, T] (true on real tokens), e.g. to send to `/decode`.",
    )

    @field_validator("layer")
    @classmethod
    def _some_layer(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, list) and not value:
            raise ValueError("at least one layer must be requested")
        return value


class EmbedResponse(BaseModel):
    model: str
    ids: list[str]
    embeddings: list[Any] = Field(description="[N, D] (pooled) or N arrays [L_i, D] (per_residue), first layer.")
    dim: int
    layer: int = Field(description="The first returned layer, as an absolute index.")
    layers: list[int]
    by_layer: dict[str, list[Any]] | None = Field(None, description="Every requested layer, when several.")
    pooling: str
    lengths: list[int]
    truncated: list[str] = Field(description="Ids of records cut to the model's maximum length.")
    errors: list[dict[str, Any]] = Field(description="Records that failed alone (e.g. out of memory), with the reason.")
    hiddens: list[Any] | None = Field(None, description="[N, T, D] per-token states, zero-padded (include_hiddens).")
    mask: list[list[bool]] | None = Field(None, description="[N, T], true on real tokens (include_hiddens).")


class ScoreRequest(RecordsRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"sequences": ["MKTAYIAKQR"], "method": "masked_marginals",
                                          "mutations": ["K2A", "T3G:A4C"]}]},
    )

    method: str | None = Field(None, description='e.g. "pll", "masked_marginals", "wt_marginals"; None = the model default.')
    mutations: list[str] | None = Field(None, description='Variants of the (single) wild type, like "A42G" or "A42G:K45R".')
    truncate: bool = Field(False, description="Cut records longer than the model's maximum instead of refusing them.")


class ScoreResponse(BaseModel):
    model: str
    method: str
    ids: list[str]
    scores: list[float | None]
    mutations: list[str] | None
    truncated: list[str]
    errors: list[dict[str, Any]]


class GenerateRequest(RecordsRequest):
    """Seeds plus sampling options; family options (e.g. ``scaled_radius``, ``method``) pass through."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"sequences": ["MKT<mask>YIA<mask>QR"], "num_samples": 2,
                                          "temperature": 1.0, "top_k": 5, "seed": 0}]},
    )

    num_samples: int | None = Field(
        None, ge=1, le=100, validation_alias=AliasChoices("num_samples", "num_molecules"),
        description='Samples per seed. Alias: "num_molecules".',
    )
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=1)
    seed: int | None = None

    def options(self) -> dict[str, Any]:
        """The sampling options that were set, family options included."""
        known = {"num_samples": self.num_samples, "temperature": self.temperature, "top_k": self.top_k,
                 "seed": self.seed}
        return {**{k: v for k, v in known.items() if v is not None}, **(self.model_extra or {})}


class GeneratedItem(BaseModel):
    id: str
    seed: str
    generated: list[str]
    scores: list[float | None]
    properties: dict[str, list[float | None]] = {}
    stats: dict[str, int] = {}


class GenerateResponse(BaseModel):
    model: str
    generated: list[GeneratedItem]
    errors: list[dict[str, Any]]


class FoldRequest(BaseModel):
    """One structure request; chains of a complex are joined with ``:``."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"sequence": "MKTAYIAKQRQISFVKSHFSRQ", "format": "pdb"}]},
    )

    sequence: str = Field(min_length=1, description='Residues; several chains joined by ":".')
    id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH, description="Name of the structure.")
    alignments: str | dict[str, str] | None = Field(None, description="a3m text, or {chain: a3m} for complexes.")
    ligands: list[str] | None = Field(None, description="Ligands as SMILES or CCD codes (models that take them).")
    format: Literal["pdb", "mmcif"] = Field("pdb", description="Structure text to return.")
    num_recycles: int | None = Field(None, ge=0, le=64)
    chunk_size: int | None = Field(None, ge=1, description="Smaller chunks use less memory on long sequences.")

    def options(self) -> dict[str, Any]:
        """Model options that were set (the output format is the server's business)."""
        known = {"id": self.id, "num_recycles": self.num_recycles, "chunk_size": self.chunk_size,
                 "alignments": self.alignments, "ligands": self.ligands or None}
        return {**{k: v for k, v in known.items() if v is not None}, **(self.model_extra or {})}


class FoldResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    id: str
    sequence: str
    format: str
    chains: list[str]
    pdb: str | None
    mmcif: str | None
    plddt: list[float]
    mean_plddt: float | None
    ptm: float | None
    iptm: float | None
    pae: list[list[float]] | None


class DecodeRequest(BaseModel):
    """Encoder hidden states back to sequences (MegaMolBART ``hidden_to_smis``)."""

    model_config = ConfigDict(extra="allow")

    hiddens: list[list[list[float]]] = Field(min_length=1, description="[B, T, D] encoder hidden states.")
    mask: list[list[bool | int]] = Field(min_length=1, description="[B, T], true (1) on real tokens.")

    @model_validator(mode="after")
    def _shapes(self) -> DecodeRequest:
        batch, length = len(self.hiddens), len(self.hiddens[0])
        width = len(self.hiddens[0][0]) if length else 0
        if length == 0 or width == 0:
            raise ValueError("hiddens must be [B, T, D] with T, D >= 1")
        for b, row in enumerate(self.hiddens):
            if len(row) != length or any(len(vec) != width for vec in row):
                raise ValueError(f"hiddens[{b}] is not [{length}, {width}] like hiddens[0]")
        if len(self.mask) != batch or any(len(row) != length for row in self.mask):
            raise ValueError(f"mask must be [{batch}, {length}] to match hiddens [{batch}, {length}, {width}]")
        return self

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DecodeResponse(BaseModel):
    model: str
    generated: list[Any]


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    family: str
    verbs: list[str]
    input_kind: str
    max_length: int
    weights_available: bool
    loaded: bool


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: str
    backend: str | None = None
    detail: str | None = None


class ErrorBody(BaseModel):
    """Every error answer: a stable code, a sentence, and the specifics when known."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="invalid_input, invalid_request, unknown_model, unsupported_verb, "
                                   "weights_not_found, model_unavailable, backend_unavailable, payload_too_large, ...")
    detail: str
    record: str | int | None = None
    position: int | None = None
    reason: str | None = None
