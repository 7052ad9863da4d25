"""The field margin: slices wider than the views, for material outside the field of view.

A particle cut by the edge of the scanned field at 0 degrees, or one that
turns into the field at high tilt, puts counts into some views that no voxel
of a box as wide as the views can explain: the solver spreads them over the
box (streaks, a wrong strength, a wrong data term). Slices wider than the
views by a margin on each side in ``x`` give that material voxels to go to;
the volume returned is still the field's (:meth:`Projector.crop
<hyperspy_edxtomo.reconstruction.projector.Projector.crop>`).

``field_margin="auto"`` validates the margin on the user's data:
:func:`choose_field_margin` scores the box as wide as the views and the
widened one at the strength chosen on the first, on the same held-out data
(count-split counts, or held-out views for other maps), and keeps the margin
only where it predicts them better by more than two standard errors of the
paired difference and by more than :data:`MIN_RELATIVE_GAIN` of the score.
Otherwise the narrow box stays: it costs less, and on a sample that lies
inside the field the two give the same volume.
"""

import numpy as np

from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.validation import paired_gain
from hyperspy_edxtomo.reconstruction.projector import largest_useful_margin

__all__ = ["MARGIN_FRACTION", "MIN_RELATIVE_GAIN", "default_field_margin", "check_field_margin",
           "choose_field_margin"]

#: the margin tried on each side, as a fraction of the views' width: a point at the film's height
#: (z = 0) beyond the field's edge by this much turns into the field from arccos(1 / (1 + 2 f)) = 48
#: degrees (f = 1/4); the slices cost 1 + 2 f = 1.5x as much
MARGIN_FRACTION = 0.25


#: the least gain, as a fraction of the narrow slices' held-out score, that keeps the margin. The two boxes
#: differ by small steady amounts that count splitting reads as significant: 0.1 % (2.4 standard errors) on a
#: dot inside the field solved short of convergence (60 iterations, tests), 0.04-0.06 % on a chain and a rod
#: inside it at the default iterations. Material outside the field gained 6-29 % (docs/benchmarks.rst)
MIN_RELATIVE_GAIN = 0.005


def default_field_margin(n_x, limit=None):
    """The margin tried for views ``n_x`` pixels wide: :data:`MARGIN_FRACTION` of it, a multiple of 4 (the
    multilevel start bins the slices twice), at least 4; at most ``limit`` (the widest margin a view sees
    into, :func:`~hyperspy_edxtomo.reconstruction.projector.largest_useful_margin`: a short tilt range
    sees little beyond the field), a multiple of 4 below it where there is one."""
    margin = int(4 * max(1, round(n_x * MARGIN_FRACTION / 4)))
    if limit is not None and margin > limit:
        margin = 4 * (int(limit) // 4) or int(limit)
    return margin


def check_field_margin(margin, tilts_deg, n_x, n_z=None, axis_offset_px=0.0):
    """Refuse a margin wider than any view sees into
    (:func:`~hyperspy_edxtomo.reconstruction.projector.largest_useful_margin`): its voxels would be seen by no
    view, and a huge one asks for a system matrix larger than memory. A margin that is not a whole number of
    pixels >= 0 is refused too."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)) \
            or margin < 0 or int(margin) != margin:
        raise InputError(f"field_margin must be a whole number of pixels >= 0, got {margin!r}.")
    limit = largest_useful_margin(tilts_deg, n_x, n_z, axis_offset_px)
    if margin > limit:
        raise InputError(
            f"field_margin={margin} px is wider than any view can see: at tilts up to "
            f"{np.max(np.abs(tilts_deg)):.0f} deg, slices {n_z or n_x} px deep and views {n_x} px wide, no ray "
            f"reaches more than {limit} px beyond the field. Give at most {limit} (or 'auto').")


def choose_field_margin(score, margin, narrow_scores=None):
    """Keep ``margin`` only where it predicts the held-out data better.

    Parameters
    ----------
    score : callable
        ``score(field_margin)`` -> the held-out scores (one per view or fold, lower is better; empty where
        nothing could be held out) of the reconstruction with slices that much wider on each side, all at the
        same strength and on the same held-out data.
    margin : int
        The margin tried (:func:`default_field_margin`).
    narrow_scores : sequence of float, optional
        ``score(0)`` where already known (the strength selection scored it).

    Returns
    -------
    margin : int
        ``margin`` or 0.
    record : dict
        ``candidates`` ``[0, margin]``, their summed ``scores``, ``gain`` (how much lower the margin's are,
        summed over the paired views or folds), ``standard_error``, ``relative_gain`` (``gain`` over the
        narrow score), ``chosen`` and ``reason``.
    """
    if margin <= 0:
        return 0, {"candidates": [0], "scores": [], "gain": None, "standard_error": None, "chosen": 0,
                   "reason": "no view sees beyond the field at these tilts: slices as wide as the views"}
    narrow = np.asarray(score(0) if narrow_scores is None else narrow_scores, float)
    wide = np.asarray(score(margin), float)
    record = {"candidates": [0, int(margin)], "scores": [float(narrow.sum()), float(wide.sum())]}
    if narrow.size < 2 or wide.size != narrow.size:
        return 0, {**record, "gain": None, "standard_error": None, "chosen": 0,
                   "reason": "nothing held out to validate a margin on: slices as wide as the views"}
    gain, se = paired_gain(narrow, wide)
    least = MIN_RELATIVE_GAIN * abs(float(narrow.sum()))
    keep = gain > 2 * se and gain > least
    what = f"slices {margin} px wider on each side"
    if keep:
        reason = f"{what} predict the held-out data better by {gain:.4g} +- {se:.3g}: material outside the field"
    elif gain > 2 * se:
        reason = (f"{what} gain {gain:.4g} +- {se:.3g}, under {MIN_RELATIVE_GAIN:.1%} of the held-out score "
                  f"({least:.4g}): slices as wide as the views")
    else:
        reason = f"{what} gain {gain:.4g} +- {se:.3g}, not more than 2 standard errors: slices as wide as the views"
    return (int(margin) if keep else 0), {**record, "gain": gain, "standard_error": se,
                                          "relative_gain": gain / max(abs(float(narrow.sum())), 1e-30),
                                          "chosen": int(margin) if keep else 0, "reason": reason}
