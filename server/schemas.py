"""Request and response bodies of the HTTP API (pydantic lives here only, at the edge).

Field names are the ones BioNeMo users know: ``sequences`` in, ``embeddings``
out; ``smis`` and ``num_molecules`` (MolMIM) are accepted as aliases;
``hiddens`` + ``mask`` for decoding; ``generated`` for new molecules.

Every request body is strict JSON: booleans are ``true``/``false`` (not 0/1),
integers are integers (not ``true`` or ``"3"``), numbers are finite (no
``NaN``/``Infinity``), text is Unicode (no lone surrogate such as ``"\ud800"``,
which JSON can escape but nothing can encode), and a key that is not a field is
refused. Routes whose
family options pass through (generate, fold, decode) refuse the keys the
model's verb does not take, and check their values against its annotations
(`bionemo_lite.binding.bind_options`).

Array answers can travel compactly: ``format: "npz" | "h5"`` (embed,
contacts) answers a file in which every JSON array is an array of the same
name (`server.payloads`); fold has ``pae_format``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.options import MAX_TEMPERATURE, MIN_TEMPERATURE, check_temperature
from bionemo_lite.pooling import POOLINGS
from bionemo_lite.records import LengthPolicy, Record, as_records
from bionemo_lite.verbs import (
    ContactsOptions,
    DecodeOptions,
    EmbedOptions,
    FoldOptions,
    GenerateOptions,
    ScoreOptions,
    length_policy,
)

MAX_ID_LENGTH = 256
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _printable(value: str) -> str:
    # A NUL cannot be stored in an HDF5 string (a 500 for format "h5") and numpy drops trailing ones
    # (npz); tabs and newlines break the TSV/CSV files ids end up in.
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"an id is printable text: control character {found.group()!r} at position {found.start() + 1}")
    return value


ID_PATTERN = "^[^\\x00-\\x1f\\x7f]+$"  # what _printable enforces, for the OpenAPI document
RecordId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, json_schema_extra={"pattern": ID_PATTERN}),
                     AfterValidator(_printable)]

ArrayFormat = Literal["json", "npz", "h5"]
FORMAT_DESCRIPTION = (
    '"json" (default), or a file: "npz" (numpy: `np.load(io.BytesIO(body))`) or "h5" (HDF5: '
    '`h5py.File(io.BytesIO(body))`). In a file every JSON array is an array of the same name (`ids`, `lengths`, '
    '...); a list of per-record arrays of different lengths becomes one array per record, `NAME/{i}` (i = the '
    'index of the record in `ids`); `by_layer/{L}` holds layer L. The other fields are the JSON text `metadata` '
    '(npz: UTF-8 bytes, `json.loads(f["metadata"].item())`; h5: the root attribute `metadata`).'
)


class StrictBody(BaseModel):
    """JSON values as written: no 0/1 for booleans, no ``true`` or ``"3"`` for numbers, finite
    numbers only, Unicode text, and no keys that are not fields (all named at once, with the ones it takes)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _unicode_text(cls, data: Any) -> Any:
        # A lone surrogate reaches the models (and RDKit, files, the JSON answer echoing it) as text
        # that cannot be encoded: refused here, with where it is, for every field and family option.
        where = lone_surrogate_at(data)
        if where is not None:
            raise ValueError(f"{where}: text is not valid Unicode (a lone surrogate, e.g. the JSON escape \\ud800 "
                             "without its pair)")
        return data

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if cls.model_config.get("extra") != "forbid" or not isinstance(data, dict):
            return data
        known = [key for name, info in cls.model_fields.items() for key in _keys(name, info.validation_alias)]
        unknown = [repr(k) for k in data if k not in known]
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}")
        return data


_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_at(data: Any) -> str | None:
    """Where in parsed JSON `data` a key or a string holds a lone surrogate (``sequences[2].id``), or None.

    Iterative, and numbers are passed over without building anything: ``hiddens`` can hold a
    million of them.
    """
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            if isinstance(key, str) and _SURROGATE.search(key):
                return _json_path((*path, key))
            if isinstance(item, str):
                if _SURROGATE.search(item):
                    return _json_path((*path, key))
            elif isinstance(item, (dict, list)):
                stack.append(((*path, key), item))
    if isinstance(data, str) and _SURROGATE.search(data):
        return "body"
    return None


def _json_path(path: tuple[Any, ...]) -> str:
    """``("sequences", 2, "id")`` -> ``sequences[2].id``, surrogates escaped (the message must encode)."""
    out = ""
    for part in path:
        text = str(part).encode("utf-8", "backslashreplace").decode("utf-8")
        out += f"[{text}]" if isinstance(part, int) else (f".{text}" if out else text)
    return out or "body"


def _keys(name: str, alias: Any) -> list[str]:
    """The JSON keys of a field: its name, or its alias choices."""
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    return [alias] if isinstance(alias, str) else [name]


class FamilyOptionsBody(StrictBody):
    """A body whose other keys are the model's own options, bound to its verb by `bind_options`
    (which refuses the keys the verb does not take and values of the wrong type)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _no_null_family_options(self) -> FamilyOptionsBody:
        nulls = sorted(k for k, v in (self.model_extra or {}).items() if v is None)
        if nulls:
            # A null would be dropped as "unset" before the model sees its name: a typo would pass.
            raise ValueError(f"option(s) {', '.join(nulls)} set to null: leave an option out to get its default")
        return self

    def family_options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SequenceItem(StrictBody):
    """A record with an explicit id."""

    id: RecordId = Field(description="Record id, unique in the request; printable (no control characters).")
    sequence: str = Field(description="Residues (one-letter codes) or a SMILES string.")


SequenceEntry = str | SequenceItem


class RecordsRequest(StrictBody):
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


class LengthPolicyBody:
    """The wire's ``truncate`` flag as the verbs' ``on_too_long``: the one place the two names meet."""

    @property
    def on_too_long(self) -> LengthPolicy:
        return length_policy(self.truncate)  # type: ignore[attr-defined]


class WindowPolicyBody(LengthPolicyBody):
    """``"window": true`` (and ``"window_stride"``) beside ``"truncate"``, for the verbs that read long
    records through overlapping windows (`bionemo_lite.windows`)."""

    @property
    def on_too_long(self) -> LengthPolicy:
        return length_policy(self.truncate, self.window, self.window_stride)  # type: ignore[attr-defined]


WINDOW_DESCRIPTION = ("Read records longer than the model's maximum through overlapping windows of that length "
                      "(ESM-2, ESM-1, ProtT5): each residue from the window it is most central in. The answer's "
                      "`windowed` names them, with their windows.")
WINDOW_STRIDE_DESCRIPTION = "Residues between window starts (with window; default: half the model's maximum)."


class EmbedRequest(RecordsRequest, WindowPolicyBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"sequences": ["MKTAYIAKQR", {"id": "p2", "sequence": "GSHMLE"}],
                                          "layer": -1, "pooling": "mean"}]},
    )

    layer: int | list[int] = Field(-1, description="Layer index (0 = embedding layer, -1 = last) or a list of them.")
    pooling: str = Field("mean", json_schema_extra={"enum": list(POOLINGS)},
                         description='One of the model\'s poolings (`GET /v1/models`): "mean" or "max" '
                                     '(over residues, no BOS/EOS), "bos", "per_residue", ...')
    truncate: bool = Field(False, description="Cut records longer than the model's maximum instead of refusing them.")
    window: bool = Field(False, description=WINDOW_DESCRIPTION)
    window_stride: int | None = Field(None, ge=1, description=WINDOW_STRIDE_DESCRIPTION)
    include_hiddens: bool = Field(
        False,
        description="Also return BioNeMo's `hiddens` [N, T, D] (per-token states of the first layer, zero-padded) "
        "and `mask` [N, T] (true on real tokens), e.g. to send to `/decode`.",
    )
    format: ArrayFormat = Field("json", description=FORMAT_DESCRIPTION + " Embeddings: `embeddings` [N, D] (pooled) "
                                "or `embeddings/{i}` [L_i, D] (per_residue); several layers: `by_layer/{L}` "
                                "(`by_layer/{L}/{i}`); with include_hiddens also `hiddens` and `mask`.")

    @field_validator("layer")
    @classmethod
    def _some_layer(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, list) and not value:
            raise ValueError("at least one layer must be requested")
        return value

    def verb_options(self) -> EmbedOptions:
        layers = tuple(self.layer) if isinstance(self.layer, list) else (self.layer,)
        return EmbedOptions(layers, self.pooling, self.on_too_long)


class EmbedResponse(BaseModel):
    """One layer: ``embeddings`` and ``layer``. Several layers: ``by_layer`` alone (no copy of any
    layer at the top level)."""

    model: str
    ids: list[str]
    embeddings: list[Any] | None = Field(
        None, description="One layer requested: [N, D] (pooled) or N arrays [L_i, D] (per_residue). "
                          "Absent when several layers were requested (see by_layer).")
    dim: int
    layer: int | None = Field(None, description="One layer requested: its absolute index. Absent with several.")
    layers: list[int] = Field(description="The returned layers, as absolute indices (0 = embedding layer).")
    by_layer: dict[str, list[Any]] | None = Field(
        None, description="Several layers requested: each one's embeddings (shaped as `embeddings`), keyed by its "
                          "absolute index as a string. Absent with one layer.")
    pooling: str
    lengths: list[int]
    truncated: list[str] = Field(description="Ids of records cut to the model's maximum length.")
    errors: list[dict[str, Any]] = Field(description="Records that failed alone (e.g. out of memory), with the reason.")
    windowed: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Records read through windows (window), by id: size, stride, count, spans.")
    hiddens: list[Any] | None = Field(
        None, description="[N, T, D] per-token states of the first requested layer, zero-padded (include_hiddens).")
    mask: list[list[bool]] | None = Field(None, description="[N, T], true on real tokens (include_hiddens).")


class ScoreRequest(RecordsRequest, WindowPolicyBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"sequences": ["MKTAYIAKQR"], "method": "masked_marginals",
                                          "mutations": ["K2A", "T3G:A4C"]}]},
    )

    method: str | None = Field(None, description='e.g. "pll", "masked_marginals", "wt_marginals"; None = the model default.')
    mutations: list[str] | None = Field(None, description='Variants of the (single) wild type, like "A42G" or "A42G:K45R".')
    truncate: bool = Field(False, description="Cut records longer than the model's maximum instead of refusing them.")
    window: bool = Field(False, description=WINDOW_DESCRIPTION + " Mutations: the window centred on each position.")
    window_stride: int | None = Field(None, ge=1, description=WINDOW_STRIDE_DESCRIPTION)

    def verb_options(self) -> ScoreOptions:
        return ScoreOptions(self.method, self.on_too_long, mutations=self.mutations)


class ScoreResponse(BaseModel):
    model: str
    method: str
    ids: list[str]
    scores: list[float | None]
    mutations: list[str] | None
    truncated: list[str]
    errors: list[dict[str, Any]]
    windowed: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Records read through windows (window), by id: size, stride, count, spans.")


class ContactsRequest(RecordsRequest, LengthPolicyBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"sequences": ["MKTAYIAKQRQISFVKSHFSRQ"]}]})

    truncate: bool = Field(False, description="Cut records longer than the model's maximum instead of refusing them.")
    format: ArrayFormat = Field("json", description=FORMAT_DESCRIPTION + " Contacts: `contacts/{i}` [L_i, L_i].")

    def verb_options(self) -> ContactsOptions:
        return ContactsOptions(self.on_too_long)


class ContactsResponse(BaseModel):
    model: str
    ids: list[str]
    contacts: list[list[list[float]]] = Field(
        description="Per record, the [L, L] contact probabilities between residues (fair-esm's return_contacts).")
    lengths: list[int] = Field(description="Residues per record, after truncation.")
    truncated: list[str] = Field(description="Ids of records cut to the model's maximum length.")


class GenerateRequest(RecordsRequest, FamilyOptionsBody):
    """Seeds plus sampling options; family options (e.g. ``scaled_radius``, ``method``) pass through."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"sequences": ["MKT<mask>YIA<mask>QR"], "num_samples": 2,
                                          "temperature": 1.0, "top_k": 5, "seed": 0}]},
    )

    num_samples: int | None = Field(
        None, ge=1, le=100, validation_alias=AliasChoices("num_samples", "num_molecules"),
        description='Samples per seed. Alias: "num_molecules".',
    )
    temperature: float | None = Field(
        None, json_schema_extra={"minimum": MIN_TEMPERATURE, "maximum": MAX_TEMPERATURE},
        description=f"Softmax temperature in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}]: below it the scaled logits "
                    "overflow (for the most likely choice use top_k=1).")
    top_k: int | None = Field(None, ge=1, description="Sample among the k most likely tokens.")
    seed: int | None = Field(None, ge=0, description="Makes the samples reproducible.")

    @field_validator("temperature")
    @classmethod
    def _temperature_the_logits_survive(cls, value: float | None) -> float | None:
        # The core's bound, checked here too so that no model is loaded for a request that must fail.
        try:
            return None if value is None else check_temperature(value)
        except InvalidInputError as exc:
            raise ValueError(exc.reason) from None

    def options(self) -> dict[str, Any]:
        """The sampling options that were set, family options included."""
        known = {"num_samples": self.num_samples, "temperature": self.temperature, "top_k": self.top_k,
                 "seed": self.seed}
        return {**{k: v for k, v in known.items() if v is not None}, **self.family_options()}

    def verb_options(self) -> GenerateOptions:
        return GenerateOptions(self.options())


class GeneratedItem(BaseModel):
    id: str
    seed: str
    generated: list[str]
    scores: list[float | None]
    properties: dict[str, list[float | None]] = {}
    stats: dict[str, int] = {}
    trace: dict[str, list[float | None]] = Field(
        {}, description="Guided generation (algorithm cma-es), per iteration: best and mean property, valid and "
                        "feasible shares.")


class GenerateResponse(BaseModel):
    model: str
    generated: list[GeneratedItem]
    errors: list[dict[str, Any]]


class FoldRequest(FamilyOptionsBody):
    """One structure request; chains of a complex are joined with ``:``."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"sequence": "MKTAYIAKQRQISFVKSHFSRQ", "format": "pdb"}]},
    )

    sequence: str = Field(min_length=1, description='Residues; several chains joined by ":".')
    id: RecordId | None = Field(None, description="Name of the structure; printable (no control characters).")
    alignments: str | dict[str, str] | None = Field(None, description="a3m text, or {chain: a3m} for complexes.")
    ligands: list[str] | None = Field(None, description="Ligands as SMILES or CCD codes (models that take them).")
    format: Literal["pdb", "mmcif"] = Field("pdb", description="Structure text to return.")
    num_recycles: int | None = Field(None, ge=0, le=64)
    chunk_size: int | None = Field(None, ge=1, description="Smaller chunks use less memory on long sequences.")
    relax: bool = Field(False, description="Also AMBER-relax the prediction (OpenMM, the server's [relax] extra): "
                                           '`relaxed` holds the relaxed text in `format` and its figures; an Accept '
                                           "header asking for the bare file then gets the relaxed one.")
    pae_format: Literal["json", "npz", "base64_float16"] = Field(
        "json",
        description='How the answer carries PAE [L, L] (about 18 MB of JSON at 1,000 residues): "json" (nested '
                    'lists), "base64_float16" (in the JSON, `pae` becomes {"dtype": "float16", "shape": [L, L], '
                    '"data": base64 of the little-endian row-major values}: 2 bytes a value, about 3 digits) or '
                    '"npz" (the whole answer as a numpy file: `pae` and `plddt` float32 arrays, the structure '
                    'text as UTF-8 bytes under `pdb` or `mmcif`, the other fields in `metadata`, as for the format '
                    'of embed). '
                    "An Accept header asking for the bare PDB / mmCIF file wins over it.")

    def options(self) -> dict[str, Any]:
        """Model options that were set (the output format is the server's business)."""
        known = {"id": self.id, "num_recycles": self.num_recycles, "chunk_size": self.chunk_size,
                 "alignments": self.alignments, "ligands": self.ligands or None}
        return {**{k: v for k, v in known.items() if v is not None}, **self.family_options()}

    def verb_options(self) -> FoldOptions:
        options = self.options()
        return FoldOptions(options.pop("num_recycles", None), options.pop("chunk_size", None), options,
                           relax=self.relax)


class EncodedArray(BaseModel):
    """An array as base64 text: ``np.frombuffer(base64.b64decode(data), "<f2").reshape(shape)``."""

    dtype: Literal["float16"]
    shape: list[int]
    data: str = Field(description="base64 of the little-endian, row-major (C order) values.")


class RelaxedStructure(BaseModel):
    """The relaxed structure (in the request's `format`) and what relaxing changed."""

    pdb: str | None
    mmcif: str | None
    energy_before: float = Field(description="AMBER ff14SB potential energy of the raw prediction, kJ/mol.")
    energy_after: float = Field(description="The same after relaxing, kJ/mol.")
    rmsd: float = Field(description="Heavy-atom RMSD moved by relaxing, Angstrom.")
    clashes_before: int = Field(description="Clashing heavy-atom pairs in the raw prediction.")
    clashes_after: int = Field(description="Clashing heavy-atom pairs after relaxing.")
    iterations: int
    seconds: float
    platform: str


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
    pae: list[list[float]] | EncodedArray | None = Field(description="[L, L] in Angstrom (see pae_format).")
    relaxed: RelaxedStructure | None = Field(None, description='The AMBER-relaxed structure ("relax": true).')


class DecodeRequest(FamilyOptionsBody):
    """Encoder hidden states back to sequences (MegaMolBART ``hidden_to_smis``); family options
    (e.g. ``method``, ``beam_size``) pass through."""

    hiddens: list[list[list[float]]] = Field(min_length=1, description="[B, T, D] encoder hidden states (finite).")
    # 0/1 too: masks are often integer arrays (numpy, torch), and here they are data, not an option.
    mask: list[list[bool | Literal[0, 1]]] = Field(min_length=1, description="[B, T], true (or 1) on real tokens.")

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
        return self.family_options()

    def verb_options(self) -> DecodeOptions:
        return DecodeOptions(self.options())


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
    ready: bool = Field(description="Loaded and able to answer now, without a load first.")
    state: str = Field(description="loaded, loading, downloading, failed (see problem) or not_loaded.")


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: str
    backend: str | None = None
    detail: str | None = None
    version: str | None = Field(None, description="The bionemo-lite version (liveness probe).")


class VersionInfo(BaseModel):
    """What is running: ``GET /v1/version``."""

    version: str = Field(description="The bionemo-lite package version.")
    python: str
    torch: str | None = Field(description="The installed torch version (None when torch is not installed).")
    backend: str = Field(description="inprocess or triton.")


class ErrorBody(BaseModel):
    """Every error answer: a stable code, a sentence, and the specifics when known."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="invalid_input, invalid_request, unknown_model, unsupported_verb, "
                                   "weights_not_found, model_unavailable, backend_unavailable, payload_too_large, ...")
    detail: str
    record: str | int | None = None
    position: int | None = None
    reason: str | None = None
    request_id: str | None = Field(None, description="The request's id (X-Request-ID): the server log has the "
                                                     "details under it.")




# ---- fine-tuning (bionemo_lite.finetune): POST /v1/models/{name}/predict and /v1/models/{base}/finetune
from bionemo_lite.verbs import PredictOptions  # noqa: E402  (appended with the verb)


class PredictRequest(RecordsRequest, LengthPolicyBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"sequences": ["MKTAYIAKQR"]}]})

    truncate: bool = Field(False, description="Cut records longer than the model's maximum instead of refusing them.")

    def verb_options(self) -> PredictOptions:
        return PredictOptions(self.on_too_long)


class PredictResponse(BaseModel):
    model: str
    task: Literal["regression", "classification"]
    target: str
    ids: list[str]
    values: list[float | str] = Field(description="Per record: the value (regression) or the most probable class.")
    probabilities: list[list[float]] | None = Field(
        description="Classification: per record, the probability of each class in `classes`; null for regression.")
    classes: list[str] | None
    truncated: list[str]
    errors: list[dict[str, Any]]


class FinetuneRequest(RecordsRequest):
    """Records with their targets; the fine-tune is written on the server and registered as `name`."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "my_solubility", "sequences": ["MKTAYIAKQR", "GSHMLE"], "targets": [0.3, 1.2],
        "task": "regression", "method": "head"}]})

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
                      description="Register the fine-tune under this name (then POST /v1/models/{name}/predict).")
    targets: list[float | str] = Field(min_length=1, description="One target per record, in the same order.")
    target: str = Field("target", min_length=1, max_length=128, description="What the targets are (for the card).")
    task: Literal["regression", "classification"] = "regression"
    method: Literal["head", "lora"] = "head"
    split: Literal["random", "identity", "scaffold"] = "random"
    seed: int = 0
    max_epochs: int = Field(100, ge=1, le=10_000)
    patience: int = Field(15, ge=1)
    hidden: int = Field(64, ge=0, le=4096)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    batch_size: int = Field(32, ge=1)
    lora_rank: int = Field(8, ge=1, le=256)

    @model_validator(mode="after")
    def _one_target_per_record(self) -> FinetuneRequest:
        if len(self.targets) != len(self.sequences):
            raise ValueError(f"{len(self.targets)} targets for {len(self.sequences)} sequences: give one per record")
        return self

    def finetune_options(self) -> Any:
        from bionemo_lite.finetune import FinetuneOptions

        return FinetuneOptions(task=self.task, method=self.method, split=self.split, seed=self.seed,
                               max_epochs=self.max_epochs, patience=self.patience, hidden=self.hidden,
                               learning_rate=self.learning_rate, batch_size=self.batch_size, lora_rank=self.lora_rank,
                               progress=False)


class FinetuneResponse(BaseModel):
    model: str = Field(description="The registered name of the fine-tune.")
    base_model: str
    task: str
    method: str
    metrics: dict[str, dict[str, float | None]] = Field(
        description="Held-out metrics: test, validation (best epoch) and baseline_test (the untrained model).")
    seconds: float
    card: dict[str, Any] = Field(description="The fine-tune's card (card.json).")


# The list of each body that the server counts against its max_sequences setting (`validation.check_count`);
# `server.openapi` documents the setting as that list's maxItems.
COUNTED_FIELDS: dict[type[BaseModel], str] = {
    EmbedRequest: "sequences", ScoreRequest: "sequences", ContactsRequest: "sequences",
    GenerateRequest: "sequences", DecodeRequest: "hiddens", PredictRequest: "sequences",
}
