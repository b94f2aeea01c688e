"""One router per resource; `ROUTERS` is what the app mounts."""

from . import contacts, decode, embed, fold, generate, health, metrics, models, score
from . import finetune, predict
from . import jobs

ROUTERS = [health.router, models.router, embed.router, score.router, generate.router, fold.router, decode.router,
           contacts.router, metrics.router]
ROUTERS += [predict.router, finetune.router]  # fine-tuning (bionemo_lite.finetune)
ROUTERS += [jobs.router]  # asynchronous jobs (server/jobs/)
from . import chem, playground  # noqa: E402

ROUTERS += [chem.router, playground.router]  # molecule drawings; the playground page (server/playground/)
from ..compat import ROUTERS as COMPAT_ROUTERS  # noqa: E402  # BioNeMo service v1 + NIM shapes (server/compat)

ROUTERS += COMPAT_ROUTERS
