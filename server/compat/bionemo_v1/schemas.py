"""Request bodies of the BioNeMo service v1, as its Python client (``bionemo==0.3.1.post2``) sends them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BinaryFormat = Literal["npz", "h5"]


class CompatBody(BaseModel):
    # The client sends these keys and no others; a typo is named rather than ignored.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ProteinEmbeddingsBody(CompatBody):
    """``esm2_sync`` / ``esm1nv_sync``."""

    sequence: list[str] = Field(min_length=1, description="Protein sequences (the client's `sequences`).")
    format: BinaryFormat = Field("npz", description="Answer file format: npz (the client's) or h5.")


class MoleculeEmbeddingsBody(CompatBody):
    """``megamolbart_embeddings_sync``."""

    smis: list[str] = Field(min_length=1, description="SMILES strings.")
    format: BinaryFormat = Field("npz", description="Answer file format: npz (the client's) or h5.")


class MoleculeGenerateBody(CompatBody):
    """``megamolbart_unguided_generate_*`` (smi, num_samples, scaled_radius) and guided generation
    (``algorithm: "CMA-ES"`` with property_name, iterations, particles, min_similarity)."""

    smi: str = Field(min_length=1, description="The seed SMILES.")
    num_samples: int = Field(10, ge=1, le=100, description="Molecules to return.")
    scaled_radius: float = Field(1.0, ge=0.0, le=2.0, description="Sampling radius (guided: CMA-ES's first step).")
    algorithm: str = Field("none", description='"none" (sampling around the seed) or "CMA-ES" (property-guided).')
    property_name: Literal["QED", "plogP", "logP"] | None = Field(None, description="Guided: the property maximised.")
    iterations: int | None = Field(None, ge=1, le=1000, description="Guided: CMA-ES generations.")
    particles: int | None = Field(None, ge=2, le=1000, description="Guided: candidates per generation.")
    min_similarity: float | None = Field(None, ge=0.0, le=1.0, description="Guided: Tanimoto to the seed to keep.")
    minimize: bool = Field(False, description="Guided: only false (maximise) is served.")
    source: str | None = Field(None, description="Ignored (the client sends 'api').")


class EsmFoldBody(CompatBody):
    """``esmfold_async`` / ``esmfold_sync``."""

    sequence: str = Field(min_length=1, description="Protein sequence (chains joined with ':').")
