"""Model families and feedback kinds: the names training, serving and the launcher share."""

from __future__ import annotations

from enum import StrEnum


class Feedback(StrEnum):
    """What the interactions mean.

    ``IMPLICIT``: every interaction is a positive; the model ranks (binary
    cross-entropy, scores are probabilities). ``EXPLICIT``: ratings are targets
    (mean squared error, scores are predicted ratings).
    """

    IMPLICIT = "implicit"
    EXPLICIT = "explicit"


#: Neural collaborative filtering (He et al. 2017), trained by gradient descent in Keras.
NCF_FAMILIES: tuple[str, ...] = ("gmf", "mlp", "neumf")
#: A dot product of id embeddings plus item / user attribute embeddings (Keras;
#: ``training.families.hybrid``); it exports GMF-shaped vectors plus ``item_bias``.
HYBRID = "hybrid"
#: Implicit alternating least squares (Hu, Koren & Volinsky 2008), with the ``implicit``
#: library; exported as a dot product in the GMF tower's weights.
IALS = "ials"
#: EASE, the closed-form linear item-item auto-encoder (Steck 2019).
EASE = "ease"
#: EASE and iALS together: each user's two score rows standardised and mixed
#: (``training.families.blend``); the model directory holds both parts.
BLEND = "blend"
#: Every family a model directory can hold.
MODEL_FAMILIES: tuple[str, ...] = (*NCF_FAMILIES, HYBRID, IALS, EASE, BLEND)
#: The default ``model_type``.
DEFAULT_FAMILY = "gmf"

#: Families with a GMF tower / an MLP tower.
GMF_TOWER_FAMILIES: tuple[str, ...] = ("gmf", "neumf", HYBRID, IALS)
MLP_TOWER_FAMILIES: tuple[str, ...] = ("mlp", "neumf")
#: Families whose score is a dot product of a user and an item vector: a history given in a
#: request is folded into a user vector (see ``inference.scoring``).
DOT_PRODUCT_FAMILIES: tuple[str, ...] = ("gmf", IALS)
#: Families that recommend from a history given in a request (``"history": [...]``).
HISTORY_FAMILIES: tuple[str, ...] = (*DOT_PRODUCT_FAMILIES, EASE, BLEND)
#: Families that learn from implicit feedback only (every interaction a positive).
IMPLICIT_ONLY_FAMILIES: tuple[str, ...] = (IALS, EASE, BLEND)
#: Families fitted by ALS iterations (the refit runs the selected number).
ALS_FAMILIES: tuple[str, ...] = (IALS, BLEND)
#: Families with an items x items matrix (refused above ``ease_max_items``).
ITEM_ITEM_FAMILIES: tuple[str, ...] = (EASE, BLEND)

#: Output activations a model directory may declare.
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "linear")


def output_activation(feedback: Feedback | str) -> str:
    """The output activation for ``feedback``: sigmoid for ranking, linear for ratings."""
    return "sigmoid" if Feedback(feedback) is Feedback.IMPLICIT else "linear"
