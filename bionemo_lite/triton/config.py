"""Writing Triton ``config.pbtxt`` files (protobuf text format) without protobuf.

Only the fields bionemo-lite uses: backend or platform, batch size, typed
inputs and outputs, dynamic batching, instance groups and string parameters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, Triton type (``TYPE_FP32``...) and dims without the batch axis."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    optional: bool = False

    def render(self) -> str:
        dims = ", ".join(str(d) for d in self.dims)
        extra = " optional: true" if self.optional else ""
        return f'  {{ name: "{self.name}" data_type: {self.data_type} dims: [ {dims} ]{extra} }}'


@dataclass(frozen=True)
class DynamicBatching:
    """Dynamic batcher settings: sizes it tries to form, and how long a request may wait for others."""

    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 2000


@dataclass(frozen=True)
class ModelConfig:
    """A Triton model configuration.

    Attributes:
        name: the model's folder name in the repository.
        backend: e.g. ``"python"``; leave None when `platform` is set.
        platform: e.g. ``"onnxruntime_onnx"``.
        max_batch_size: 0 turns Triton's batching off (dims then include the batch axis).
        inputs / outputs: typed tensors.
        dynamic_batching: None for no dynamic batcher.
        instance_kind: ``"KIND_CPU"`` or ``"KIND_GPU"``; instance_count: instances (per GPU for KIND_GPU).
        parameters: string parameters, read by the model at start-up.
    """

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    backend: str | None = None
    platform: str | None = None
    max_batch_size: int = 0
    dynamic_batching: DynamicBatching | None = None
    instance_kind: str = "KIND_CPU"
    instance_count: int = 1
    parameters: Mapping[str, str] | None = None

    def render(self) -> str:
        """The ``config.pbtxt`` text."""
        lines = [f'name: "{self.name}"']
        if self.backend:
            lines.append(f'backend: "{self.backend}"')
        if self.platform:
            lines.append(f'platform: "{self.platform}"')
        lines.append(f"max_batch_size: {self.max_batch_size}")
        lines.append("input [\n" + ",\n".join(t.render() for t in self.inputs) + "\n]")
        lines.append("output [\n" + ",\n".join(t.render() for t in self.outputs) + "\n]")
        if self.dynamic_batching is not None:
            body = []
            if self.dynamic_batching.preferred_batch_sizes:
                sizes = ", ".join(str(s) for s in self.dynamic_batching.preferred_batch_sizes)
                body.append(f"  preferred_batch_size: [ {sizes} ]")
            body.append(f"  max_queue_delay_microseconds: {self.dynamic_batching.max_queue_delay_us}")
            lines.append("dynamic_batching {\n" + "\n".join(body) + "\n}")
        lines.append(f"instance_group [ {{ kind: {self.instance_kind} count: {self.instance_count} }} ]")
        for key, value in (self.parameters or {}).items():
            lines.append(f"parameters: {{ key: {json.dumps(key)} value: {{ string_value: {json.dumps(str(value))} }} }}")
        return "\n".join(lines) + "\n"


def default_preferred_sizes(max_batch_size: int) -> tuple[int, ...]:
    """Quarter, half and full batch (e.g. 16, 32, 64), without repeats or zeros."""
    sizes = sorted({max_batch_size // 4, max_batch_size // 2, max_batch_size} - {0})
    return tuple(sizes)


def string_parameters(values: Mapping[str, object]) -> dict[str, str]:
    """Parameters as Triton stores them (strings); None values are left out, lists become JSON."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
    return out


def read_parameters(config_text: str) -> dict[str, str]:
    """The string parameters of a ``config.pbtxt`` written by `ModelConfig.render`."""
    pattern = re.compile(r'parameters:\s*\{\s*key:\s*("(?:[^"\\]|\\.)*")\s*value:\s*\{\s*string_value:\s*("(?:[^"\\]|\\.)*")')
    return {json.loads(k): json.loads(v) for k, v in pattern.findall(config_text)}

