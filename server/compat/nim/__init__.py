"""The BioNeMo NIM REST shapes (ESM2, ESMFold, OpenFold3, MolMIM) under ``/nim``."""

from .routes import PREFIX, router

__all__ = ["PREFIX", "router"]
