"""Background subtraction of element maps (the maps then stop being counts)."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.private_api import is_lazy, with_new_data
from hyperspy_edxtomo.base.provenance import append_history
from hyperspy_edxtomo.signals.background import background_data, set_background
from hyperspy_edxtomo.signals.element_maps import ElementMapTiltSeries
from hyperspy_edxtomo.signals.methods import signal_method

__all__ = ["Negative", "NEGATIVE_CHOICES", "apply_negative", "subtract_background"]

#: what happens to pixels that are negative after subtraction
Negative = Literal["clip", "keep", "raise"]
NEGATIVE_CHOICES = get_args(Negative)


def apply_negative(data, negative, lazy):
    """Handle the negative pixels of background-subtracted maps (see ``negative``)."""
    if negative == "clip":
        return data.clip(0, None)
    if negative == "raise":
        if lazy:
            raise InputError("negative='raise' needs the values: compute() the series first or use 'clip'/'keep'.")
        if np.any(data < 0):
            n = int((data < 0).sum())
            raise InputError(f"{n} pixels are negative after background subtraction (negative='raise').")
    return data


@signal_method(ElementMapTiltSeries)
def subtract_background(maps: ElementMapTiltSeries, negative: Negative = "clip") -> ElementMapTiltSeries:
    """The maps minus their background: ``data - background``.

    Parameters
    ----------
    negative : {"clip", "keep", "raise"}
        Pixels where the difference is negative (common at a few counts
        per pixel): ``"clip"`` sets them to 0, ``"keep"`` keeps them
        (unbiased, but not counts), ``"raise"`` raises a ValueError.

    Returns
    -------
    ElementMapTiltSeries
        Background-subtracted maps (lazy when these are), without a
        background; the step is in ``history``. They are no longer
        Poisson counts: count-based methods (``lam="auto"``, the
        count-split FSC, ``two_step``) need the raw maps.

    Raises
    ------
    ValueError
        When the maps carry no background.

    Examples
    --------
    >>> import numpy as np
    >>> import hyperspy_edxtomo as het
    >>> counts = np.full((1, 3, 4, 4), 2, dtype=np.uint8)
    >>> maps = het.element_maps_from_array(counts, [-30, 0, 30], ["Zn"],
    ...                                    background=np.full(counts.shape, 0.5))
    >>> net = maps.subtract_background()
    >>> float(net.data.max()), net.background is None
    (1.5, True)
    """
    if negative not in NEGATIVE_CHOICES:
        raise InputError(f"negative must be one of {NEGATIVE_CHOICES}, got {negative!r}")
    b = background_data(maps)
    if b is None:
        raise InputError(
            "These maps carry no background (metadata.Tomography.background): there is nothing to subtract. "
            "get_element_maps() attaches one unless called with background_windows=None or "
            "subtract_background=True (then the maps are already raw counts without one, or subtracted)."
        )
    if not is_lazy(maps) and hasattr(b, "compute"):
        b = b.compute()
    data = maps.data - b
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float64)
    data = apply_negative(data, negative, is_lazy(maps))
    out = with_new_data(maps, data)
    set_background(out, None)
    out.metadata.General.title = f"{maps.metadata.General.title} (background subtracted)"
    append_history(out, "background", "subtract", {"negative": negative})
    return out
