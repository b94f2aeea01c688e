"""``POST /v1/chem/depict``: RDKit drawings (SVG) and properties of molecules, for grids of results.

The playground draws generated molecules with it; any client may. SMILES are held to
`bionemo_lite.smiles_text`'s bounds and parsed in RDKit's worker process
(`bionemo_lite.smiles_guard`) before anything is drawn in this one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from bionemo_lite import chem
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.records import Record
from bionemo_lite.smiles_guard import parse_many
from bionemo_lite.smiles_text import check_smiles_text

from ..deps import SettingsDep
from ..errors import ERROR_RESPONSES
from ..responses import json_response
from ..schemas import RecordsRequest, StrictBody
from ..validation import check_count

router = APIRouter(tags=["chem"])


class DepictRequest(RecordsRequest):
    """Molecules to draw, and an optional reference for the similarity column."""

    reference: str | None = Field(None, description="A SMILES: each molecule's Tanimoto similarity (Morgan r=2) to it.")
    width: int = Field(240, ge=50, le=1000, description="Drawing width in pixels.")
    height: int = Field(180, ge=50, le=1000, description="Drawing height in pixels.")


class DepictedMolecule(StrictBody):
    id: str
    smiles: str = Field(description="RDKit's canonical SMILES.")
    svg: str
    qed: float
    logp: float
    similarity: float | None = Field(description="Tanimoto similarity to the reference; null without one.")


class DepictResponse(StrictBody):
    molecules: list[DepictedMolecule]


def _canonical(records: list[Record]) -> list[str]:
    """Canonical SMILES of each record, checked and parsed in the RDKit worker; the first bad one raises."""
    for r in records:
        check_smiles_text(r.sequence, r.id)  # bounds before any parser
    parsed = parse_many([r.sequence for r in records], [r.id for r in records])
    for outcome in parsed:
        if isinstance(outcome, InvalidInputError):
            raise outcome
    return [str(p) for p in parsed]


def _depict(ids: list[str], smiles: list[str], reference: str | None, width: int, height: int) -> dict[str, Any]:
    # Canonical SMILES the worker has parsed already: safe to parse again here.
    mols = [chem.parse_smiles(s, record=i) for i, s in zip(ids, smiles)]
    props = chem.properties(mols, chem.parse_smiles(reference, record="reference") if reference else None)
    similarity = props.get("tanimoto", [None] * len(mols))
    return {"molecules": [
        {"id": i, "smiles": s, "svg": chem.depict_svg(m, width, height), "qed": q, "logp": lp, "similarity": sim}
        for i, s, m, q, lp, sim in zip(ids, smiles, mols, props["qed"], props["logp"], similarity)
    ]}


@router.post("/v1/chem/depict", response_model=DepictResponse, responses=ERROR_RESPONSES)
async def depict(body: DepictRequest, settings: SettingsDep) -> Response:
    """Draw molecules (SVG) with their QED, Crippen logP and, given a reference, Tanimoto similarity."""
    records = body.records()
    check_count(len(records), settings.max_sequences)
    if body.reference is not None:
        records_and_ref = [*records, Record("reference", body.reference, len(records))]
    else:
        records_and_ref = records
    canonical = await run_in_threadpool(_canonical, records_and_ref)
    reference = canonical[-1] if body.reference is not None else None
    result = await run_in_threadpool(_depict, [r.id for r in records], canonical[: len(records)], reference,
                                     body.width, body.height)
    return await json_response(result)
