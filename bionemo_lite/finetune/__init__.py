"""Fine-tuning: a base model adapted to a few hundred labelled records, saved and served as a variant.

* `finetune` (`api.py`): read a labelled table (`data.py`), split it (`splits.py`: random, sequence
  identity, Bemis-Murcko scaffold), train a head on cached embeddings or LoRA adapters plus a head
  (`encoders.py`, `head.py`, `trainer.py`), report held-out metrics (`metrics.py`), write the folder
  and its card (`card.py`) and optionally register it by name (`store.py`).
* `FinetunedModel` (`model.py`): the loaded fine-tune, answering the ``predict`` verb.

``bionemo_lite.finetune`` is this package and the function at once (``bionemo_lite.finetune(...)``
calls `finetune`), since a package attribute of the same name would be replaced by the package on
its first import. The torch parts load on first use.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .card import FinetuneCard, is_finetune_folder
from .options import FinetuneOptions, FinetuneResult

_LAZY = {
    "finetune": ".api", "FinetunedModel": ".model", "load_finetuned": ".model", "load_path": ".model",
    "register_finetune": ".store", "registered_specs": ".store",
}

__all__ = ["FinetuneCard", "FinetuneOptions", "FinetuneResult", "is_finetune_folder", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> FinetuneResult:
        from .api import finetune

        return finetune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
