"""Resumable batch jobs over a model verb (see `run_job`).

    >>> from bionemo_lite.io import InputFile
    >>> from bionemo_lite.jobs import EmbedTask, run_job
    >>> model = bionemo_lite.load("esm2_t6_8M_UR50D", weights="esm2_t6_8M_UR50D.pt")
    >>> run_job(InputFile("proteins.fasta"), EmbedTask(model), "out.parquet")
    JobSummary(output=PosixPath('out.parquet'), ..., n_ok=..., n_failed=...)
"""

from .identity import job_identity, weights_fingerprint
from .manifest import Manifest, params_hash, sequence_hash
from .runner import (
    DEFAULT_CHUNK_SIZE,
    ChunkOutcome,
    ChunkReport,
    JobSummary,
    JobTask,
    RecordSource,
    default_paths,
    failure_reason,
    run_job,
)
from .tasks import (
    ContactsTask,
    EmbedTask,
    FoldTask,
    GenerateTask,
    MutationScoreTask,
    MutationSource,
    PredictTask,
    ScoreTask,
    structure_filename,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE", "ChunkOutcome", "ChunkReport", "ContactsTask", "EmbedTask", "FoldTask", "GenerateTask",
    "JobSummary", "JobTask", "Manifest", "MutationScoreTask", "MutationSource", "PredictTask", "RecordSource", "ScoreTask",
    "default_paths", "failure_reason", "job_identity", "params_hash", "run_job", "sequence_hash", "structure_filename", "weights_fingerprint",
]
