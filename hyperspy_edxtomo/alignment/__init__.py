"""Stage: aligning the views of a tilt series (shifts, tilt-axis offset and rotation).

Modules: ``api`` (``align``, ``apply_alignment``, ``estimate_alignment``,
``with_reference_images``), ``policy`` (``method="auto"``: which stage is
accepted and why), ``estimators`` (one ``estimate(views, tilts, alignment)``
each), ``criterion`` (the held-out criterion), ``result`` (:class:`Alignment`,
the record in ``metadata.Tomography.alignment``), ``views`` (input checks and
the prepared views) and ``transform`` (moving views).
``etspy`` (``to_etspy``, ``alignment_from_etspy``, ``apply_etspy_alignment``,
``alignment_to_etspy``): alignment with the optional package etspy.
"""

from hyperspy_edxtomo.alignment.api import (
    METHODS,
    align,
    apply_alignment,
    estimate_alignment,
    with_reference_images,
)
from hyperspy_edxtomo.alignment.criterion import (
    LOSSES,
    HeldOutCriterion,
    alignment_score,
)
from hyperspy_edxtomo.alignment.etspy import (
    alignment_from_etspy,
    alignment_to_etspy,
    apply_etspy_alignment,
    to_etspy,
)
from hyperspy_edxtomo.alignment.result import Alignment

__all__ = ["METHODS", "LOSSES", "align", "apply_alignment", "estimate_alignment", "alignment_score",
           "HeldOutCriterion", "with_reference_images", "Alignment"]
__all__ += ["to_etspy", "alignment_from_etspy", "apply_etspy_alignment", "alignment_to_etspy"]
