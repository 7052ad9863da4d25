"""Paired comparisons of held-out scores: the one rule every automatic choice uses to ask whether a
candidate predicts data it did not see better than the safer choice."""

import numpy as np


def paired_gain(base, other):
    """How much lower ``other``'s scores are than ``base``'s, summed over the views, folds or pixels they
    are paired on, and the standard error of that sum (inf with one pair).

    Examples
    --------
    >>> from hyperspy_edxtomo.base.validation import paired_gain
    >>> gain, se = paired_gain([3.0, 4.0, 5.0], [2.0, 3.5, 4.0])
    >>> round(gain, 3), round(se, 3)
    (2.5, 0.5)
    """
    d = np.asarray(base, float) - np.asarray(other, float)
    se = float(np.std(d, ddof=1) * np.sqrt(d.size)) if d.size > 1 else float("inf")
    return float(d.sum()), se
