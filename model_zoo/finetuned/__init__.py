"""The ``finetuned`` plugin: the fine-tunes registered by name (`bionemo_lite.finetune.register_finetune`).

`specs()` lists the folders of the weight cache that hold a fine-tune card, so
``bionemo-lite models`` shows them and ``load(name)`` / the HTTP service find them like
any variant. The model itself (`FinetunedModel`, the ``predict`` verb) lives in the core,
since it works on any family's base model through the verbs.
"""

from __future__ import annotations

from bionemo_lite.spec import ModelSpec


def specs() -> list[ModelSpec]:
    """One spec per registered fine-tune (no torch is imported)."""
    from bionemo_lite.finetune.store import registered_specs

    return registered_specs()
