"""Model families: each fits on a dataset and exports into the same model directory.

``family_for(model_type)`` returns the family that fits ``model_type``: the NCF
families (``ncf``: GMF, MLP, NeuMF in Keras), ``ials`` (implicit ALS), ``ease``
(closed-form item-item) and ``blend`` (EASE and iALS mixed); see
``training.families.base`` for the seam every family implements. Only the NCF
families import TensorFlow.
"""

from __future__ import annotations

from ncf_contract.families import BLEND, EASE, HYBRID, IALS, NCF_FAMILIES
from training.families.base import FitContext, FitResult, FittedModel, ModelFamily

__all__ = [
    "FitContext",
    "FitResult",
    "FittedModel",
    "ModelFamily",
    "distributes",
    "family_for",
]


def distributes(model_type: str) -> bool:
    """Whether ``model_type``'s family trains data-parallel across hosts and GPUs.

    The NCF families do (``training.distributed``); any other runs on the chief
    alone in a multi-instance job.
    """
    return model_type in NCF_FAMILIES


def family_for(model_type: str) -> ModelFamily:
    """The family that fits ``model_type`` (one of ``ncf_contract.families.MODEL_FAMILIES``).

    Raises:
        ValueError: ``model_type`` names no family.
    """
    if model_type in NCF_FAMILIES:
        from training.families.ncf import NcfFamily  # TensorFlow loads here

        return NcfFamily()
    if model_type == HYBRID:
        from training.families.hybrid import HybridFamily  # TensorFlow loads here

        return HybridFamily()
    if model_type == IALS:
        from training.families.ials import IalsFamily

        return IalsFamily()
    if model_type == EASE:
        from training.families.ease import EaseFamily

        return EaseFamily()
    if model_type == BLEND:
        from training.families.blend import BlendFamily

        return BlendFamily()
    raise ValueError(f"no model family fits model_type {model_type!r}")
