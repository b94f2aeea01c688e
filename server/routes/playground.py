"""The playground page at ``/playground/`` (``/`` redirects there): static files from the package.

The page calls the public API from the browser (same origin), so it needs no key to load;
its requests carry the key the user types in.
"""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from ..errors import error_response
from ..playground import STATIC

router = APIRouter(include_in_schema=False)
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".txt": "text/plain"}


@router.get("/")
async def root() -> Response:
    return RedirectResponse("/playground/")


@router.get("/playground")
async def playground_bare() -> Response:
    return RedirectResponse("/playground/")


@router.get("/playground/{path:path}")
async def playground(path: str) -> Response:
    """A file of the page; the empty path is ``index.html``."""
    target = (STATIC / (path or "index.html")).resolve()
    if not target.is_relative_to(STATIC) or not target.is_file():  # no way out of static/
        return error_response(404, "not_found", f"no playground file {path!r}")
    media = TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return FileResponse(target, media_type=media, headers={"Cache-Control": "no-cache"})
