"""Stage: aligning the views of a tilt series (shifts, tilt-axis offset and rotation)."""

from hyperspy_edxtomo.alignment.policy import (
    LOSSES,
    METHODS,
    HeldOutCriterion,
    align,
    alignment_score,
    apply_alignment,
    estimate_alignment,
    with_reference_images,
)

__all__ = ["METHODS", "LOSSES", "align", "apply_alignment", "estimate_alignment", "alignment_score",
           "HeldOutCriterion", "with_reference_images"]
