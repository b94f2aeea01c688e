"""Compatibility routers: the protocols existing clients speak, as thin translations to the verbs.

* `bionemo_v1`: NVIDIA's BioNeMo service v1, for its official Python client (``bionemo``).
* `nim`: the documented REST shapes of the BioNeMo NIMs (ESM2, ESMFold, OpenFold3, MolMIM).

They hold no model logic: each route turns its body into the native one and runs
it as the native route does (`native`), then turns the answer back.
"""

from .bionemo_v1 import router as bionemo_v1_router
from .nim import router as nim_router

ROUTERS = [bionemo_v1_router, nim_router]
