"""Finding, downloading and safely reading checkpoints.

Resolution order: an explicit path, then the cache folder
``$BIONEMO_LITE_HOME/<model name>/`` (default ``~/.cache/bionemo-lite``).
Nothing is downloaded implicitly: `pull` does that, with a progress bar, a
sha256 check where one is published and an atomic rename, so a killed
download never leaves a half file that looks complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from .errors import CheckpointError, DownloadError, InvalidInputError, WeightsNotFoundError
from .io.atomic import atomic_path
from .spec import ModelSpec, WeightFile, WeightSource

logger = logging.getLogger(__name__)


def cache_home() -> Path:
    """The weight cache root (``$BIONEMO_LITE_HOME`` or ``~/.cache/bionemo-lite``)."""
    return Path(os.environ.get("BIONEMO_LITE_HOME") or Path.home() / ".cache" / "bionemo-lite")


def model_cache_dir(spec: ModelSpec) -> Path:
    return cache_home() / spec.name


def pull_command(spec: ModelSpec) -> str | None:
    """The command that downloads `spec`'s official weights, or None when it publishes none."""
    return f"bionemo-lite weights pull {spec.name}" if spec.weights else None


def weights_placeholder(spec: ModelSpec) -> str:
    """What a user points ``--weights NAME=...`` at: the entry file of the first
    source, or the model's folder (ending in ``/``) for directory checkpoints."""
    if spec.weights and spec.weights[0].entry:
        return spec.weights[0].entry
    return f"{spec.name}/"


def _how_to_get(spec: ModelSpec) -> str:
    if not spec.weights:
        return "This model publishes no weights; pass a checkpoint path with weights=... / --weights."
    src = spec.weights[0]
    files = ", ".join(f.filename for f in src.files)
    where = src.homepage or src.files[0].url
    return (
        f"Run `{pull_command(spec)}` when online, or download {files} from {where} "
        f"into {model_cache_dir(spec)}, or pass the path (Python: weights=...; CLI: --weights PATH; "
        f"service: bionemo-lite serve --weights {spec.name}=PATH)."
    )


def cached_path(spec: ModelSpec, source: WeightSource) -> Path | None:
    """Where `source` sits in the cache, if all its required files are there."""
    folder = model_cache_dir(spec)
    if all((folder / f.filename).is_file() for f in source.files if f.required):
        return folder / source.entry if source.entry else folder
    return None


def resolve_weights(spec: ModelSpec, weights: str | os.PathLike | None = None) -> Path:
    """The checkpoint path to load for `spec`.

    Raises:
        WeightsNotFoundError: naming the file, where it looked and how to get it.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if path.exists():
            return path
        raise WeightsNotFoundError(spec.name, path.name, [str(path.parent)], _how_to_get(spec))
    for source in spec.weights:
        found = cached_path(spec, source)
        if found is not None:
            return found
    wanted = spec.weights[0].entry or spec.weights[0].files[0].filename if spec.weights else spec.name
    raise WeightsNotFoundError(spec.name, wanted, [str(model_cache_dir(spec))], _how_to_get(spec))


def weights_available(spec: ModelSpec, weights: str | os.PathLike | None = None) -> bool:
    try:
        resolve_weights(spec, weights)
        return True
    except WeightsNotFoundError:
        return False


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_file(file: WeightFile, dest: Path, progress: bool = True, timeout: float = 60.0) -> Path:
    """Stream `file.url` to `dest` atomically, checking its sha256 when known."""
    import httpx
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    # A short connect timeout: behind a firewall that drops packets, "offline" shows in seconds, not minutes.
    limits = httpx.Timeout(timeout, connect=min(timeout, 10.0))
    try:
        # atomic_path: a killed download never looks complete, and the file's mode follows the umask.
        with atomic_path(dest) as tmp, tmp.open("wb") as out, \
                httpx.stream("GET", file.url, follow_redirects=True, timeout=limits) as resp:
            if resp.status_code != 200:
                raise DownloadError(f"GET {file.url} answered HTTP {resp.status_code}")
            total = int(resp.headers.get("content-length") or 0) or file.size_bytes
            with tqdm(total=total, unit="B", unit_scale=True, desc=file.filename, disable=not progress) as bar:
                for block in resp.iter_bytes(1 << 20):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
            out.flush()
            if file.sha256 and digest.hexdigest() != file.sha256:
                raise DownloadError(
                    f"{file.filename}: sha256 {digest.hexdigest()} does not match the published {file.sha256}"
                )
    except httpx.HTTPError as exc:
        raise DownloadError(f"could not download {file.url}: {exc}") from exc
    return dest


def pull(spec: ModelSpec, source_index: int | None = None, progress: bool = True) -> Path:
    """Download a variant's official weights into the cache; returns the loadable path.

    Args:
        source_index: which of ``spec.weights`` to fetch; None tries each in
            order (e.g. fair-esm's server, then the Hugging Face mirror).

    Raises:
        DownloadError: no source could be fetched (the message says how to get the files by hand).
    """
    if not spec.weights:
        raise DownloadError(f"{spec.name} publishes no downloadable weights")
    indices = range(len(spec.weights)) if source_index is None else [source_index]
    folder = model_cache_dir(spec)
    existed = folder.exists()
    problems: list[str] = []
    last: DownloadError | None = None
    for index in indices:
        source = spec.weights[index]
        try:
            return _pull_source(spec, source, folder, progress)
        except DownloadError as exc:
            problems.append(f"{source.format}: {exc}")
            last = exc
    if not existed and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()  # leave no empty folder that looks like a cache entry
    # Chained, so a caller can show the root cause (e.g. the DNS error) without the whole story.
    message = f"could not fetch weights for {spec.name!r} ({'; '.join(problems)}). {_how_to_get(spec)}"
    raise DownloadError(message) from last


def _pull_source(spec: ModelSpec, source: WeightSource, folder: Path, progress: bool) -> Path:
    for f in source.files:
        target = folder / f.filename
        if target.is_file() and (f.sha256 is None or sha256_of(target) == f.sha256):
            continue
        try:
            download_file(f, target, progress=progress)
        except DownloadError as exc:
            if f.required:
                raise
            logger.warning("optional file %s of %s not downloaded: %s", f.filename, spec.name, exc)
    found = cached_path(spec, source)
    if found is None:  # pragma: no cover - every required file was just written
        raise DownloadError(f"{spec.name}: files missing after download")
    return found


def _torch_reason(exc: BaseException) -> str:
    """The part of torch's message that says what is wrong with the file.

    ``weights_only`` failures come with several paragraphs advising
    ``weights_only=False``, which is exactly what must not be done with an
    untrusted file; keep the unpickler's own words.
    """
    text = str(exc).strip()
    if text.startswith("Weights only load failed"):
        text = text.split("Check the documentation of torch.load", 1)[0]
        marker = "WeightsUnpickler error:"
        text = text.split(marker, 1)[1] if marker in text else text.split("\n\n", 1)[-1]
    text = " ".join(text.split())
    return text or f"{type(exc).__name__} (empty or cut-off file?)"


_SAFE_GLOBALS_LOCK = threading.Lock()


def safe_torch_load(
    path: Path | BinaryIO, allowed_globals: Iterable[Any] = (), mmap: bool = False, *, name: str | None = None
) -> Any:
    """`torch.load` that never unpickles arbitrary objects.

    Only tensors, containers and the classes in `allowed_globals` (e.g.
    ``argparse.Namespace`` for official ESM-2 files) are accepted. With
    `mmap`, tensors stay on disk until used, so a plugin can drop parts of a
    large checkpoint (a T5 decoder, say) without reading them into memory.

    Args:
        path: a file, or an open binary stream (a member read out of an archive).
        name: what error messages call the file (default: `path`), e.g.
            ``"model.nemo: model_weights.ckpt"`` for a stream.

    Raises:
        CheckpointError: naming the file: not a torch checkpoint, cut off, or
            holding objects other than tensors and the allowed classes.
    """
    import pickle

    import torch

    shown = name or str(path)
    try:
        # torch's allow-list is process-wide: two loads in threads (a server preloading two models) would
        # change it under each other, so one load at a time holds it.
        with _SAFE_GLOBALS_LOCK, torch.serialization.safe_globals(list(allowed_globals)):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError:
                if not mmap:
                    raise
                # Legacy (pre-zip) checkpoints cannot be memory-mapped: read them whole.
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # torch says this for any non-allow-listed class
            raise CheckpointError(f"{shown}: not a readable torch checkpoint: {_torch_reason(exc)}") from exc
        raise CheckpointError(
            f"{shown}: refused to unpickle (only tensors and allow-listed types are loaded): {_torch_reason(exc)}"
        ) from exc
    except Exception as exc:  # untrusted bytes: torch fails with IndexError, KeyError, EOFError... on junk
        raise CheckpointError(f"{shown}: not a readable torch checkpoint: {_torch_reason(exc)}") from exc


def _from_safetensors(path: Path, read: Callable[[Any], Any]) -> Any:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return read(fh)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from exc


def read_safetensors(path: Path, keep: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """The tensors of a ``.safetensors`` file (those whose name `keep` accepts; all by default).

    Raises:
        CheckpointError: naming the file, when it is not a complete safetensors file.
    """
    return _from_safetensors(path, lambda fh: {k: fh.get_tensor(k) for k in fh.keys() if keep is None or keep(k)})


def check_safetensors(path: Path) -> list[str]:
    """The tensor names of a ``.safetensors`` file, reading only its header.

    Raises:
        CheckpointError: naming the file, when the header is unreadable or does not
            cover the file (random bytes, a cut-off download, another format).
    """
    return _from_safetensors(path, lambda fh: list(fh.keys()))


def resolve_dtype(dtype: str | None, device: str, default_gpu: str = "float16") -> "Any":
    """Map a dtype name to a torch dtype; None means fp32 on CPU, `default_gpu` elsewhere."""
    import torch

    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype is None:
        return torch.float32 if str(device).startswith("cpu") else names[default_gpu]
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return names[str(dtype).lower()]
    except KeyError:
        raise InvalidInputError(f"unknown dtype {dtype!r}; use one of float32, float16, bfloat16") from None


def list_cached() -> dict[str, Path]:
    """Model names with a folder in the cache."""
    home = cache_home()
    return {p.name: p for p in sorted(home.iterdir()) if p.is_dir()} if home.is_dir() else {}


