"""The playground: a no-build web page (HTML, JS, CSS in ``static/``) over the public HTTP API.

Served by the service itself at ``/playground/`` (`bionemo_lite.server.routes.playground`);
3Dmol.js is vendored under ``static/vendor/`` (version in ``VERSIONS.txt``), plots are plain canvas.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
