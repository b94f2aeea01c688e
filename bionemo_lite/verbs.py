"""The verb contract: one Protocol per verb, its typed request options and its typed result.

This module is the seam between the models and their front doors. A plugin's
model implements the Protocols of the verbs its spec declares; a remote model
(`bionemo_lite.triton.remote.RemoteModel`) implements the same ones over the
network. The front doors (Python, CLI batch jobs, the HTTP service, Triton's
``model.py``) build a request's options dataclass and call `run` on it, and
nothing else, so every door passes a verb the same keywords:

    >>> from bionemo_lite.verbs import EmbedOptions
    >>> EmbedOptions(layers=(-1,), pooling="mean", on_too_long="truncate").run(model, ["MKTAYIAKQR"])

Adding a verb: a Protocol, a result type and an options dataclass here, the
method on the plugin, and one line per door.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .binding import bind_options
from .errors import InvalidInputError
from .records import WINDOW, Inputs, LengthPolicy, Record
from .results import Decoded, Embeddings, Generated, Scores, Structure


def length_policy(truncate: bool, window: bool = False, window_stride: int | None = None) -> LengthPolicy:
    """The verbs' ``on_too_long`` for a door's flags (the one mapping): ``--truncate`` / ``"truncate": true``,
    ``--window`` / ``"window": true`` and ``--window-stride N`` / ``"window_stride": N``.

    Raises:
        InvalidInputError: both truncate and window, or a stride without window.
    """
    if truncate and window:
        raise InvalidInputError("ask for truncate or for window, not both")
    if window_stride is not None and not window:
        raise InvalidInputError("a window stride needs the window length policy (--window; \"window\": true)")
    if window:
        return WINDOW if window_stride is None else f"{WINDOW}:{window_stride}"
    return "truncate" if truncate else "error"


class Named(Protocol):
    """What every model, local or remote, tells its callers about itself."""

    @property
    def name(self) -> str: ...

    @property
    def verbs(self) -> frozenset[str]: ...

    @property
    def max_length(self) -> int: ...


@runtime_checkable
class Embedder(Named, Protocol):
    def embed(
        self,
        inputs: Inputs,
        layer: int | Sequence[int] = -1,
        pooling: str = "mean",
        *,
        on_too_long: LengthPolicy = "error",
        tokens_per_batch: int | None = None,
    ) -> Embeddings:
        """Embed sequences (or molecules); see `Embeddings`."""
        ...


@runtime_checkable
class ContactPredictor(Named, Protocol):
    def contacts(
        self, inputs: Inputs, *, on_too_long: LengthPolicy = "error", tokens_per_batch: int | None = None
    ) -> list[np.ndarray]:
        """Per record, an ``[L, L]`` float array of contact probabilities."""
        ...


@runtime_checkable
class Scorer(Named, Protocol):
    def score(self, inputs: Inputs, method: str = ..., **options: Any) -> Scores:
        """Score records (likelihoods, variant effects); see `Scores`."""
        ...


@runtime_checkable
class Generator(Named, Protocol):
    def generate(self, inputs: Inputs, **options: Any) -> Generated:
        """Generate new sequences or molecules from seeds; see `Generated`."""
        ...


@runtime_checkable
class Folder(Named, Protocol):
    def fold(
        self, record: Record | str, *, num_recycles: int | None = None, chunk_size: int | None = None,
        **options: Any,
    ) -> Structure:
        """Predict the structure of one record (a str is a record named ``"sequence"``); see `Structure`."""
        ...


@runtime_checkable
class Decoder(Named, Protocol):
    def decode(self, hiddens: Any, mask: Any = None, **options: Any) -> Decoded:
        """Decode hidden states back to sequences or molecules; see `Decoded`."""
        ...


@dataclass
class OnnxEncoder:
    """What an encoder hands the ONNX exporter.

    Attributes:
        module: ``torch.nn.Module`` whose forward takes the named integer inputs
            (``[batch, length]``) and returns the named float outputs.
        example_inputs: tensors to trace with (any valid batch).
        input_names / output_names: graph tensor names, in forward order.
        dynamic_axes: ``{name: {axis: label}}`` for torch.onnx.export.
        tokenize: sequences -> the named int64 arrays the module expects
            (padded batch), so a server can feed the graph without the plugin.
        residue_mask: from the tokenized arrays, ``[batch, length]`` bool of
            residue positions (pooling excludes special tokens and padding).
        bos_index: position of a BOS token, or None when the model has none.
    """

    module: Any
    example_inputs: tuple
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    tokenize: Callable[[list[str]], dict[str, np.ndarray]]
    residue_mask: Callable[[dict[str, np.ndarray]], np.ndarray]
    bos_index: int | None = 0
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class OnnxExportable(Named, Protocol):
    """The optional protocol of encoders that Triton can serve from an ONNX graph."""

    def onnx_encoder(self) -> OnnxEncoder:
        """The encoder as a traceable module, for ONNX export."""
        ...


@runtime_checkable
class LoraAdaptable(Named, Protocol):
    """The optional protocol of encoders whose torch module LoRA fine-tuning may adapt
    (`bionemo_lite.finetune.encoders.LoraEncoder`), without claiming an ONNX graph for Triton.

    Encoders that are `OnnxExportable` need not implement it: their ``onnx_encoder()`` serves.
    """

    def lora_encoder(self) -> OnnxEncoder:
        """The encoder module (token arrays -> last hidden state ``[B, T, D]``), its tokenizer and
        the residue mask of the positions ``embed(pooling="mean")`` averages."""
        ...


# -- request options: what a door asks of a verb, typed -------------------------------------------


@dataclass(frozen=True)
class EmbedOptions:
    """An ``embed`` request's options.

    Attributes:
        layers: layers to return (0 = embedding layer, -1 = last).
        pooling: ``"mean"``, ``"bos"``, ``"per_residue"``... (the family's poolings).
        on_too_long: ``"error"``, ``"truncate"`` or ``"window"`` (``"window:STRIDE"``: overlapping
            windows, `bionemo_lite.windows`) for records over the model's maximum.
        tokens_per_batch: padded tokens per forward pass (None: the model's default).
    """

    layers: tuple[int, ...] = (-1,)
    pooling: str = "mean"
    on_too_long: LengthPolicy = "error"
    tokens_per_batch: int | None = None

    @property
    def layer(self) -> int | list[int]:
        """`layers` as `Embedder.embed` takes it: one int, or a list for several."""
        return int(self.layers[0]) if len(self.layers) == 1 else [int(x) for x in self.layers]

    def run(self, model: Embedder, inputs: Inputs) -> Embeddings:
        # The length policy and batch budget go only where set: a family's default applies otherwise.
        options: dict[str, Any] = {}
        if self.on_too_long != "error":
            options["on_too_long"] = self.on_too_long
        if self.tokens_per_batch is not None:
            options["tokens_per_batch"] = self.tokens_per_batch
        return model.embed(inputs, self.layer, self.pooling, **options)


@dataclass(frozen=True)
class ContactsOptions:
    """A ``contacts`` request's options (see `EmbedOptions` for the fields)."""

    on_too_long: LengthPolicy = "error"
    tokens_per_batch: int | None = None

    def run(self, model: ContactPredictor, inputs: Inputs) -> list[np.ndarray]:
        return model.contacts(inputs, on_too_long=self.on_too_long, tokens_per_batch=self.tokens_per_batch)


@dataclass(frozen=True)
class ScoreOptions:
    """A ``score`` request's options; only what is set reaches the scorer (a SMILES
    scorer has its own default method and no length policy).

    Attributes:
        method: ``"pll"``, ``"masked_marginals"``... (None: the model's default).
        mutations: the mutations to score against the one wild type (per-mutation methods).
        extra: the family's own options, bound to its ``score`` by name.
    """

    method: str | None = None
    on_too_long: LengthPolicy = "error"
    tokens_per_batch: int | None = None
    mutations: Sequence[str] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def keywords(self) -> dict[str, Any]:
        """The options that are set, under the verb's keyword names."""
        options: dict[str, Any] = {**self.extra, "method": self.method, "tokens_per_batch": self.tokens_per_batch,
                                   "mutations": list(self.mutations) if self.mutations is not None else None}
        if self.on_too_long != "error":
            options["on_too_long"] = self.on_too_long
        return {k: v for k, v in options.items() if v is not None}

    def run(self, model: Scorer, inputs: Inputs) -> Scores:
        return model.score(inputs, **bind_options(model.score, self.keywords(), model.name))


@dataclass(frozen=True)
class GenerateOptions:
    """A ``generate`` request's options: the family's own (``num_samples``, ``temperature``, ``seed``...)."""

    options: Mapping[str, Any] = field(default_factory=dict)

    def run(self, model: Generator, inputs: Inputs) -> Generated:
        return model.generate(inputs, **bind_options(model.generate, dict(self.options), model.name))


@dataclass(frozen=True)
class FoldOptions:
    """A ``fold`` request's options.

    Attributes:
        num_recycles: trunk recycles (None: the model's default).
        chunk_size: attention chunk (None: the model's default; 0: none).
        extra: the family's own options (``msa``, ``ligands``, ``seed``...).
        relax: AMBER-relax the prediction (`bionemo_lite.relax`, the ``[relax]`` extra): the
            result's ``relaxed`` holds the relaxed structure and its figures. Done here, after
            the fold, so every folder and every door (a remote Triton model too) relaxes alike.
    """

    num_recycles: int | None = None
    chunk_size: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    relax: bool = False

    def run(self, model: Folder, record: Record | str) -> Structure:
        from .relax import fold_and_relax

        options = {**self.extra, "num_recycles": self.num_recycles, "chunk_size": self.chunk_size}
        return fold_and_relax(lambda: model.fold(record, **bind_options(model.fold, options, model.name)), self.relax)


@dataclass(frozen=True)
class DecodeOptions:
    """A ``decode`` request's options: the family's own (``method``, ``beam_size``, ``max_length``...)."""

    options: Mapping[str, Any] = field(default_factory=dict)

    def run(self, model: Decoder, hiddens: Any, mask: Any = None) -> Decoded:
        kwargs = bind_options(model.decode, dict(self.options), model.name, positional=2)
        return model.decode(hiddens, mask, **kwargs)


def options_from_keywords(verb: str, keywords: Mapping[str, Any]) -> Any:
    """`verb`'s typed options from a door's plain keywords (a JSON object): the options dataclass's named
    fields by name, everything else in its ``extra`` / ``options`` mapping (bound to the verb by name)."""
    cls = VERB_OPTIONS[verb]
    names = {f.name for f in fields(cls)}
    rest_field = next((n for n in ("extra", "options") if n in names), None)
    named = {k: v for k, v in keywords.items() if k in names and k != rest_field}
    if "layers" in named:
        named["layers"] = tuple(named["layers"]) if isinstance(named["layers"], (list, tuple)) else (named["layers"],)
    rest = {k: v for k, v in keywords.items() if k not in named}
    if rest and rest_field is None:
        raise InvalidInputError(f"unknown option(s) {', '.join(map(repr, sorted(rest)))} for {verb}")
    return cls(**named, **({rest_field: rest} if rest_field else {}))


VERB_PROTOCOLS: dict[str, type] = {
    "embed": Embedder,
    "contacts": ContactPredictor,
    "score": Scorer,
    "generate": Generator,
    "fold": Folder,
    "decode": Decoder,
}
"""The Protocol of each verb, by name."""

VERB_OPTIONS: dict[str, type] = {
    "embed": EmbedOptions,
    "contacts": ContactsOptions,
    "score": ScoreOptions,
    "generate": GenerateOptions,
    "fold": FoldOptions,
    "decode": DecodeOptions,
}
"""The typed options of each verb, by name."""


# -- predict: the verb of fine-tuned models (`bionemo_lite.finetune`) -------------------------------

from .results import Predictions  # noqa: E402  (appended with the verb, so the lines above stay as they were)


@runtime_checkable
class Predictor(Named, Protocol):
    def predict(
        self, inputs: Inputs, *, on_too_long: LengthPolicy = "error", tokens_per_batch: int | None = None
    ) -> Predictions:
        """Per record, the fine-tuned target: a value (regression) or class probabilities; see `Predictions`."""
        ...


@dataclass(frozen=True)
class PredictOptions:
    """A ``predict`` request's options (see `EmbedOptions` for the fields)."""

    on_too_long: LengthPolicy = "error"
    tokens_per_batch: int | None = None

    def run(self, model: Predictor, inputs: Inputs) -> Predictions:
        return model.predict(inputs, on_too_long=self.on_too_long, tokens_per_batch=self.tokens_per_batch)


VERB_PROTOCOLS["predict"] = Predictor
VERB_OPTIONS["predict"] = PredictOptions
