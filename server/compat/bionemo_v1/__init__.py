"""The BioNeMo service v1 protocol (``BionemoClient(api_host="http://HOST:8000/bionemo/v1")``)."""

from .routes import PREFIX, router

__all__ = ["PREFIX", "router"]
