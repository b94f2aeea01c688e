"""`ESM1Model`: ESM-2's verbs (embed, score, contacts, logits) on an `ESM1bNetwork`.

Everything above the network is shared with ESM-2 (`bionemo_lite.zoo.esm2.model`):
the same alphabet, batching, poolings and scoring methods.
"""

from __future__ import annotations

from bionemo_lite.zoo.esm2.model import ESM2Model


class ESM1Model(ESM2Model):
    """A loaded ESM-1b or ESM-1v model (the verbs its spec declares: embed, score, and contacts for ESM-1b).

    Example:
        >>> model = bionemo_lite.load("esm1b_t33_650M_UR50S", weights="esm1b_t33_650M_UR50S.pt")
        >>> model.embed(["MKTAYIAKQR"], pooling="mean").by_layer[33].shape
        (1, 1280)
    """
