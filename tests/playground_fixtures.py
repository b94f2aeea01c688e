"""Helpers for the playground's browser tests: Debian's chromium under Playwright, and pixel checks.

Playwright's own browser download cannot be reached here, so the tests launch the system
``chromium`` (``make install`` installs it when missing) by path. WebGL (3Dmol.js) runs on
SwiftShader, chromium's software renderer, as there is no GPU.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots; git-ignored
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # software WebGL for the 3D viewer
]


def chromium_path() -> str:
    """The system chromium; a missing one is an install problem, reported as such (never a skip)."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        raise RuntimeError("chromium is not installed: run `make install` (it runs `apt-get install -y chromium`)")
    return found


def distinct_colours(png: bytes) -> int:
    """How many different RGB colours a screenshot holds (1 for a blank canvas)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    return len(colours) if colours is not None else 1 << 20


def save_artifact(name: str, png: bytes) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(png)
    return path
