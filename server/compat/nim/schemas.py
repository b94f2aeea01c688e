"""Request bodies of the BioNeMo NIMs, with their documented limits (a body past them is a 422)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

NIM_MAX_SEQUENCES = 32  # ESM2 NIM: 1-32 sequences a request
NIM_MAX_RESIDUES = 1024  # ESM2 / ESMFold NIM: 1-1024 residues a sequence
Protein = Annotated[str, Field(min_length=1, max_length=NIM_MAX_RESIDUES)]


class NimBody(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Esm2Body(NimBody):
    sequences: list[Protein] = Field(min_length=1, max_length=NIM_MAX_SEQUENCES,
                                 description=f"1-{NIM_MAX_SEQUENCES} protein sequences of 1-{NIM_MAX_RESIDUES} residues.")
    format: Literal["npz", "h5"] = Field("npz", description="The answer file: `embeddings` [N, D] (mean over residues).")


class EsmFoldBody(NimBody):
    sequence: str = Field(min_length=1, max_length=NIM_MAX_RESIDUES, description="One protein sequence.")


class A3m(NimBody):
    alignment: str = Field(min_length=1)
    format: Literal["a3m"] = "a3m"


class MainMsa(NimBody):
    a3m: A3m


class Msa(NimBody):
    main: MainMsa


class Molecule(NimBody):
    """A protein chain (``sequence``, optional ``msa``) or a ligand (``smiles`` or ``ccd_codes``)."""

    type: Literal["protein", "dna", "rna", "ligand"]
    id: str | list[str] | None = None
    sequence: str | None = Field(None, min_length=1, max_length=4096)
    msa: Msa | None = None
    smiles: str | None = Field(None, min_length=1)
    ccd_codes: str | list[str] | None = None


class OpenFold3Input(NimBody):
    input_id: str | None = None
    molecules: list[Molecule] = Field(min_length=1)
    diffusion_samples: int = Field(1, ge=1, le=5, description="Structures to return (one fold per sample seed).")
    output_format: Literal["cif", "pdb"] = "cif"


class OpenFold3Body(NimBody):
    request_id: str | None = None
    inputs: list[OpenFold3Input] = Field(min_length=1, max_length=1)


class MolmimSequences(NimBody):
    sequences: list[str] = Field(min_length=1, description="SMILES strings.")


class MolmimDecodeBody(NimBody):
    hiddens: list[list[list[float]]] = Field(min_length=1, description="[B, T, D] as /hidden gives them.")
    mask: list[list[bool]] = Field(min_length=1, description="[B, T] as /hidden gives it.")


class MolmimSamplingBody(NimBody):
    sequences: list[str] = Field(min_length=1, description="Seed SMILES.")
    beam_size: int = Field(1, ge=1, le=10)
    num_molecules: int = Field(1, ge=1, le=10)
    scaled_radius: float = Field(0.7, ge=0.0, le=2.0)


class MolmimGenerateBody(NimBody):
    smi: str = Field(min_length=1)
    algorithm: Literal["CMA-ES", "none"] = "CMA-ES"
    iterations: int = Field(10, ge=1, le=1000)
    min_similarity: float = Field(0.7, ge=0.0, le=0.7)
    minimize: bool = False
    num_molecules: int = Field(10, ge=1, le=100)
    particles: int = Field(30, ge=2, le=1000)
    property_name: Literal["QED", "plogP"] = "QED"
    scaled_radius: float = Field(1.0, ge=0.0, le=2.0)
