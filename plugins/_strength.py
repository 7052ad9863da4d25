"""The ``lam`` parameter shared by the regularised plugins: "auto" or a number."""

from traits.api import Enum, Range, Union


def strength_trait(what):
    return Union(
        Enum("auto"),
        Range(0.0, None, exclude_low=True),
        default_value="auto",
        desc=f"{what} strength; 'auto' chooses it by count-splitting cross-validation on held-out counts",
    )
