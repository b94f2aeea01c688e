"""A model served by Triton, behind the same verb Protocols as a loaded one.

    >>> from bionemo_lite.triton.remote import RemoteModel
    >>> model = RemoteModel.connect("esm2_t6_8M_UR50D", "127.0.0.1:8010")
    >>> model.embed(["MKTAYIAKQR"], pooling="mean").embeddings.shape
    (1, 320)

`RemoteModel` implements `bionemo_lite.verbs` (embed, score, generate, fold,
decode, as the repository exports them) over a `TritonClient`, so a batch job,
a script or the HTTP service runs against Triton with the code it runs against
``bionemo_lite.load(...)``. Options are bound to the verb on the server side
(Triton's ``model.py`` calls the plugin with them), so a bad option is the same
`InvalidInputError` either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UnsupportedVerbError
from ..records import Inputs, LengthPolicy, Record
from ..registry import get_spec
from ..results import Decoded, Embeddings, Generated, Predictions, Scores, Structure
from ..spec import ModelSpec
from .client import Protocol, TritonClient
from .protocol import SERVABLE_VERBS


class RemoteModel:
    """A registered model as a Triton server serves it.

    Attributes:
        spec: the variant's card (its limits and input kind, as in-process).
        client: the connection to the server.
        device: ``"triton:<host:port>"``: where the model runs (part of a job's identity).
        dtype: ``"served"``: the server's export decides it.
        weights_path: None (the weights live with the server).
    """

    weights_path: Path | None = None
    numerics: str | None = None
    dtype = "served"

    def __init__(self, spec: ModelSpec, client: TritonClient):
        self.spec = spec
        self.client = client
        self.device = f"triton:{client.url}"

    @classmethod
    def connect(cls, name: str, url: str, protocol: Protocol = "http", *, timeout: float = 300.0) -> RemoteModel:
        """The registered model `name` on the Triton server at `url` (``host:port``, HTTP or gRPC)."""
        return cls(get_spec(name), TritonClient(url, protocol, timeout=timeout))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def verbs(self) -> frozenset[str]:
        """The spec's verbs that Triton can serve (the repository may export fewer: calls then fail
        with `BackendUnavailableError` naming the missing Triton model)."""
        return frozenset(v for v in self.spec.verbs if v in SERVABLE_VERBS)

    @property
    def max_length(self) -> int:
        return self.spec.max_length

    def _require(self, verb: str) -> None:
        if verb not in self.verbs:
            raise UnsupportedVerbError(self.name, verb, sorted(self.verbs))

    def embed(
        self,
        inputs: Inputs,
        layer: int | Sequence[int] = -1,
        pooling: str = "mean",
        *,
        on_too_long: LengthPolicy = "error",
        tokens_per_batch: int | None = None,
    ) -> Embeddings:
        """`Embedder.embed` on the server; `tokens_per_batch` is the server's to choose (its export's batching)."""
        self._require("embed")
        return self.client.embed(self.name, inputs, layer, pooling, on_too_long=on_too_long)

    def score(self, inputs: Inputs, method: str | None = None, **options: Any) -> Scores:
        """`Scorer.score` on the server."""
        self._require("score")
        return self.client.score(self.name, inputs, method, **options)

    def generate(self, inputs: Inputs, **options: Any) -> Generated:
        """`Generator.generate` on the server."""
        self._require("generate")
        return self.client.generate(self.name, inputs, **options)

    def fold(
        self, record: Record | str, *, num_recycles: int | None = None, chunk_size: int | None = None,
        **options: Any,
    ) -> Structure:
        """`Folder.fold` on the server; a `Record`'s id names the structure and its errors."""
        self._require("fold")
        sequence = record.sequence if isinstance(record, Record) else record
        if isinstance(record, Record):
            options.setdefault("id", record.id)
        for key, value in (("num_recycles", num_recycles), ("chunk_size", chunk_size)):
            if value is not None:
                options[key] = value
        return self.client.fold(self.name, sequence, **options)

    def decode(self, hiddens: Any, mask: Any = None, **options: Any) -> Decoded:
        """`Decoder.decode` on the server."""
        self._require("decode")
        return self.client.decode(self.name, hiddens, mask, **options)

    def predict(
        self, inputs: Inputs, *, on_too_long: LengthPolicy = "error", tokens_per_batch: int | None = None
    ) -> Predictions:
        """`Predictor.predict` (a fine-tuned model) on the server; `tokens_per_batch` is the server's to choose."""
        self._require("predict")
        return self.client.predict(self.name, inputs, on_too_long=on_too_long)

    def close(self) -> None:
        """Close the connection (the server keeps serving)."""
        self.client.close()

    def __repr__(self) -> str:
        return f"RemoteModel(name={self.name!r}, url={self.client.url!r})"
