"""Serving bionemo-lite models on NVIDIA Triton Inference Server.

- `export`: write a standard Triton model repository for a registered model
  (python backend calling the plugin, or an ONNX encoder).
- `launch`: start a real ``tritonserver`` (on PATH, or the one in the
  ``nvidia-pytriton`` wheel) and wait until it is ready.
- `client`: a small typed client on ``tritonclient`` (HTTP or gRPC).

Nothing here imports torch or tritonclient at import time; the submodules do
what they need when they are used. This package lives inside ``bionemo_lite``
on purpose: a top-level folder named ``triton`` would shadow OpenAI's
``triton``, which torch imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import TritonClient
    from .export import ExportReport, export_model
    from .launch import TritonServer, find_tritonserver

__all__ = ["ExportReport", "TritonClient", "TritonServer", "export_model", "find_tritonserver"]

_LAZY = {
    "TritonClient": "client",
    "ExportReport": "export",
    "export_model": "export",
    "TritonServer": "launch",
    "find_tritonserver": "launch",
}


def __getattr__(name: str) -> Any:
    # Lazy attributes keep `import bionemo_lite.triton` free of torch/tritonclient imports.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
