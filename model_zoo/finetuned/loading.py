"""The ``finetuned`` family's loader: the core's `load_finetuned` (the model works on any base family)."""

from bionemo_lite.finetune.model import load_finetuned

__all__ = ["load_finetuned"]
