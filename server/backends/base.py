"""What the routes need from a backend, whether models run in this process or behind Triton.

Routes have already checked, before calling a backend, that the model exists
and has the verb, that the request is within the server's limits and (for
protein inputs) that every record is valid and short enough. A backend runs
the call and returns the JSON-ready dict of the core result (`to_dict()`), and
raises `bionemo_lite` errors for anything else (`InvalidInputError` -> 422,
`WeightsNotFoundError` / `CheckpointError` / `BackendUnavailableError` -> 503).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bionemo_lite.errors import UnsupportedVerbError
from bionemo_lite.registry import get_spec, list_models
from bionemo_lite.spec import ModelSpec
from bionemo_lite.weights import weights_available

if TYPE_CHECKING:
    from ..schemas import DecodeRequest, EmbedRequest, FoldRequest, GenerateRequest, ScoreRequest
    from ..schemas import ContactsRequest
    from ..settings import Settings


@dataclass(frozen=True)
class Readiness:
    """What the readiness probe answers.

    Attributes:
        status: ``"ready"``, ``"loading"`` (models still downloading or loading, none failed)
            or ``"not_ready"``.
        detail: one sentence; for models that cannot load it names each and its fix.
        missing: `Problem.to_dict()` of each model that cannot be served (model, file, reason, fix).
        loading: models still being downloaded or loaded.
    """

    status: str
    detail: str | None = None
    missing: tuple[dict[str, Any], ...] = ()
    loading: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def to_dict(self, backend: str) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "backend": backend, "detail": self.detail}
        if not self.ready:
            body.update(missing=list(self.missing), loading=list(self.loading))
        return body


@runtime_checkable
class Backend(Protocol):
    """The interface every backend implements (all calls are awaited on the event loop)."""

    kind: str
    """``"inprocess"``, ``"triton"``, ... (shown by the readiness probe)."""

    async def start(self, preload: Sequence[str] = (), download: Sequence[str] = ()) -> None:
        """Get ready to serve; load `preload` now rather than on first use (in the background
        where loading takes a while), fetching those in `download` into the cache first if missing."""
        ...

    async def ready(self) -> bool:
        """True when requests can be answered (Triton: the server is reachable and live)."""
        ...

    async def readiness(self) -> Readiness:
        """`ready` with the reasons: what is missing and how to fix it, what is still loading."""
        ...

    async def models(self) -> list[dict[str, Any]]:
        """One entry per registered model: `describe_model` plus backend facts."""
        ...

    async def embed(self, name: str, request: EmbedRequest) -> dict[str, Any]:
        """`Embeddings.to_dict()` (plus ``by_layer`` when several layers were asked for)."""
        ...

    async def score(self, name: str, request: ScoreRequest) -> dict[str, Any]:
        """`Scores.to_dict()`."""
        ...

    async def generate(self, name: str, request: GenerateRequest) -> dict[str, Any]:
        """`Generated.to_dict()`."""
        ...

    async def contacts(self, name: str, request: ContactsRequest) -> dict[str, Any]:
        """``{"model": name, "contacts": [...]}``: per record, the [L, L] contact map as lists."""
        ...

    async def fold(self, name: str, request: FoldRequest) -> dict[str, Any]:
        """`Structure.to_dict()` with both PDB and mmCIF text when the model has them."""
        ...

    async def decode(self, name: str, request: DecodeRequest) -> dict[str, Any]:
        """``{"model": name, "generated": [...]}``."""
        ...

    async def close(self) -> None:
        """Release models, threads and connections."""
        ...


def describe_model(spec: ModelSpec, settings: Settings, **facts: Any) -> dict[str, Any]:
    """The `/v1/models` entry of `spec`: its card (without the config), whether its
    weights can be found with this server's settings, and backend facts such as ``loaded``."""
    entry = spec.to_dict()
    entry.pop("config", None)
    entry["weights_available"] = weights_available(spec, settings.weights.get(spec.name))
    entry.update(facts)
    return entry


class BackendBase:
    """Defaults shared by backends: the registry listing and "verb not served" answers.

    Subclasses override the verbs they serve and `model_facts`.
    """

    kind = "base"

    def __init__(self, settings: Settings):
        self.settings = settings

    async def start(self, preload: Sequence[str] = (), download: Sequence[str] = ()) -> None:
        return None

    async def ready(self) -> bool:
        return True

    async def readiness(self) -> Readiness:
        if await self.ready():
            return Readiness("ready")
        return Readiness("not_ready", f"the {self.kind} backend is not ready")

    def model_facts(self, spec: ModelSpec) -> dict[str, Any]:
        """Backend facts added to a model's listing entry."""
        return {"loaded": False}

    async def models(self) -> list[dict[str, Any]]:
        return [describe_model(spec, self.settings, **self.model_facts(spec)) for spec in list_models()]

    def _not_served(self, name: str, verb: str) -> UnsupportedVerbError:
        spec = get_spec(name)
        served = [v for v in spec.verbs if v != verb]
        return UnsupportedVerbError(f"{name} (on the {self.kind} backend)", verb, served)

    async def embed(self, name: str, request: EmbedRequest) -> dict[str, Any]:
        raise self._not_served(name, "embed")

    async def score(self, name: str, request: ScoreRequest) -> dict[str, Any]:
        raise self._not_served(name, "score")

    async def generate(self, name: str, request: GenerateRequest) -> dict[str, Any]:
        raise self._not_served(name, "generate")

    async def contacts(self, name: str, request: ContactsRequest) -> dict[str, Any]:
        raise self._not_served(name, "contacts")

    async def fold(self, name: str, request: FoldRequest) -> dict[str, Any]:
        raise self._not_served(name, "fold")

    async def decode(self, name: str, request: DecodeRequest) -> dict[str, Any]:
        raise self._not_served(name, "decode")

    async def close(self) -> None:
        return None
