"""From a validated `FoldRequest` to openfold3's input features, offline.

openfold3's own featurisation code does the work (``InferenceDataset``: atom
array and RDKit reference conformers, MSA and template features). What this
module adds is what its data module would otherwise do over the network:

- MSAs: a chain without one gets openfold3's "dummy" alignment (the query row
  only), exactly what its runner writes when the ColabFold server is off;
- templates: no chain names a template, and template structures are never
  fetched (``fetch_missing_structures=False``), so template features are empty;
- the CCD is the copy biotite ships (no ``ccd_file_path``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from .inputs import FoldRequest

MSA_FILENAME = "colabfold_main.a3m"  # a name openfold3's MSASettings reads (max_seq_counts, aln_order)
PER_SAMPLE_KEYS = frozenset({"num_paired_seqs"})  # shape [1] per sample, [batch] once collated


class Featurizer:
    """openfold3's ``InferenceDataset`` built once, reused for every request.

    Args:
        workdir: a private folder for openfold3's template bookkeeping and the
            per-request MSA files.
    """

    def __init__(self, workdir: Path):
        from openfold3.core.data.framework.single_datasets.inference import InferenceDataset
        from openfold3.core.data.pipelines.preprocessing.template import TemplatePreprocessorSettings
        from openfold3.projects.of3_all_atom.config.dataset_configs import (
            InferenceDatasetConfigKwargs,
            InferenceJobConfig,
        )
        from openfold3.projects.of3_all_atom.config.inference_query_format import InferenceQuerySet

        self.workdir = Path(workdir)
        kwargs = InferenceDatasetConfigKwargs()  # the inference runner's MSA/template settings
        # The dataset wants a query set to index; requests are featurised one by one.
        placeholder = InferenceQuerySet(queries={"placeholder": {"chains": [_protein_chain("A", "G", None)]}})
        job = InferenceJobConfig(
            query_set=placeholder,
            seeds=[0],
            ccd_file_path=None,
            msa=kwargs.msa,
            template=kwargs.template,
            template_preprocessor_settings=TemplatePreprocessorSettings(
                fetch_missing_structures=False, output_directory=self.workdir / "templates"
            ),
            pocket_sampling=kwargs.pocket_sampling,
        )
        self.dataset = InferenceDataset(job, world_size=None)

    def warm_up(self) -> None:
        """Read the CCD entries of the standard residues now rather than in the first request."""
        from biotite.structure.info import residue

        from openfold3.core.data.resources.residues import PROTEIN_RESTYPE_1TO3

        for code in PROTEIN_RESTYPE_1TO3.values():
            residue(code)

    def query(self, request: FoldRequest, msa_dir: Path) -> Any:
        """openfold3's ``Query`` for `request`; MSA files are written under `msa_dir`."""
        from openfold3.projects.of3_all_atom.config.inference_query_format import InferenceQuerySet

        chains: list[dict[str, Any]] = []
        for chain in request.proteins:
            text = chain.msa if chain.msa is not None else f">query\n{chain.model_sequence}\n"
            # openfold3 keys MSAs by their folder ("representative id"): one folder per content.
            digest = hashlib.sha256(text.encode()).hexdigest()[:16]
            folder = msa_dir / digest
            folder.mkdir(parents=True, exist_ok=True)
            (folder / MSA_FILENAME).write_text(text)
            chains.append(_protein_chain(chain.chain_id, chain.model_sequence, folder / MSA_FILENAME))
        for lig in request.ligands:
            entry: dict[str, Any] = {"molecule_type": "ligand", "chain_ids": [lig.chain_id]}
            if lig.ccd is not None:
                entry["ccd_codes"] = [lig.ccd]
            else:
                entry["smiles"] = lig.smiles
            chains.append(entry)
        query_set = InferenceQuerySet(queries={request.id: {"chains": chains}})
        return query_set.queries[request.id]

    def features(self, request: FoldRequest, msa_dir: Path) -> dict[str, Any]:
        """Unbatched features of `request` (``atom_array`` included)."""
        return self.dataset.create_all_features(self.query(request, msa_dir))


def _protein_chain(chain_id: str, sequence: str, msa_path: Path | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"molecule_type": "protein", "chain_ids": [chain_id], "sequence": sequence}
    if msa_path is not None:
        entry["main_msa_file_paths"] = [str(msa_path)]
    return entry


def collate(features: dict[str, Any], query_id: str, seed: int, device: torch.device) -> dict[str, Any]:
    """A batch of one, as openfold3's ``openfold_batch_collator`` builds it, on `device`."""
    batch: dict[str, Any] = {}
    for key, value in features.items():
        if isinstance(value, torch.Tensor):
            # openfold3's collator squeezes every trailing singleton, which would also eat
            # the token axis of a one-token input; only per-sample scalars need it.
            batch[key] = (value if key in PER_SAMPLE_KEYS else value.unsqueeze(0)).to(device)
        else:
            batch[key] = [value]
    batch["query_id"] = [query_id]
    batch["seed"] = [seed]
    return batch
