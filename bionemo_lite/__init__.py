"""bionemo-lite: biomolecular models behind verbs (embed, score, generate, fold, decode, contacts).

    >>> import bionemo_lite as bl
    >>> [s.name for s in bl.list_models(verb="embed")][:2]
    >>> model = bl.load("esm2_t6_8M_UR50D", weights="esm2_t6_8M_UR50D.pt")
    >>> model.embed(["MKTAYIAKQR"], pooling="mean").embeddings.shape
"""

from .errors import (
    BackendUnavailableError,
    DeviceUnavailableError,
    BionemoLiteError,
    CheckpointError,
    DownloadError,
    InvalidInputError,
    UnknownModelError,
    UnsupportedVerbError,
    WeightsNotFoundError,
)
from .model import BioModel
from .records import Record
from .registry import get_spec, list_models, load, register
from .results import Decoded, Embeddings, Generated, GeneratedRecord, RecordError, Scores, Structure
from .spec import ModelSpec, WeightFile, WeightSource
from .verbs import ContactPredictor, Decoder, Embedder, Folder, Generator, OnnxExportable, Scorer

from .results import Predictions
from .verbs import Predictor

# Fine-tuning: `bionemo_lite.finetune(...)` (the package is callable, see its docstring).
from . import finetune
from .finetune import FinetuneCard, FinetuneOptions, FinetuneResult

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError", "BioModel", "ContactPredictor", "Decoded", "Decoder", "DeviceUnavailableError", "BionemoLiteError", "CheckpointError", "DownloadError",
    "Embedder", "Embeddings", "Folder", "Generated", "GeneratedRecord", "Generator", "InvalidInputError",
    "ModelSpec", "OnnxExportable", "Record", "RecordError", "Scorer", "Scores", "Structure", "UnknownModelError",
    "UnsupportedVerbError", "WeightFile", "WeightSource", "WeightsNotFoundError", "get_spec",
    "list_models", "load", "register",
    "FinetuneCard", "FinetuneOptions", "FinetuneResult", "Predictions", "Predictor", "finetune",
]
