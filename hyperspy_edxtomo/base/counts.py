"""X-ray counts: what the statistics of the whole package rest on.

The one place that decides whether maps are Poisson counts, splits counts
binomially and measures how well expected counts explain observed ones.
Maps that are not counts (background-subtracted, normalised, smoothed,
quantified) are handled too: :func:`data_kind` tells them apart, and the
methods that need counts fall back to criteria that hold for any maps
(held-out views instead of held-out counts).
"""

import numpy as np

from hyperspy_edxtomo.base.errors import InputError

#: what :func:`data_kind` returns
DATA_KINDS = ("counts", "scaled_counts", "continuous")
#: a value is an integer when it is this close to one (float32 maps of counts)
INTEGER_TOLERANCE = 1e-3
#: more counts than this in one pixel of one map: not X-ray counts in disguise
MAX_COUNTS_PER_PIXEL = 1e5
#: views of one series whose totals differ by more than this factor are named in a warning
#: (another dose or dwell time, a failed frame): alignment and reconstruction weigh every view alike
DOSE_RATIO_WARN = 10.0
#: An empty view of counts is refused as a failed frame only when Poisson chance cannot explain it:
#: the other views' median total is at least this (exp(-14) < 1e-6); below, it is warned about.
EMPTY_VIEW_COUNTS = 14.0
#: steps of 1/2 ... 1/16 of a unit are taken for counts only in maps normalised to a maximum of 1
AMBIGUOUS_STEPS = 16


def is_counts(values):
    """True when ``values`` are finite, non-negative integers (X-ray counts).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.base.counts import is_counts
    >>> is_counts(np.array([0, 1, 3])), is_counts(np.array([0.5, 1.0])), is_counts(np.array([-1, 2]))
    (True, False, False)
    """
    v = np.asarray(values)
    if np.issubdtype(v.dtype, np.integer):
        return bool(v.size == 0 or v.min() >= 0)
    if not np.issubdtype(v.dtype, np.floating) or not np.all(np.isfinite(v)):
        return False
    return bool(np.all(v >= 0) and np.all(np.abs(v - np.round(v)) <= INTEGER_TOLERANCE))


def counts_quantum(values):
    """The value of one count when ``values`` are counts times a positive scale.

    Maps normalised by their maximum (or exported in counts per second, or
    per pixel area) are counts in disguise: every value is a whole multiple of
    the smallest step between values. Returns that step, or None when the
    values are not such multiples (background-subtracted, smoothed,
    quantified maps) or hold fewer than two distinct non-zero values.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.base.counts import counts_quantum
    >>> counts = np.random.default_rng(0).poisson(0.7, (4, 16, 16))
    >>> q = counts_quantum(counts / counts.max())
    >>> bool(np.isclose(q, 1 / counts.max()))
    True
    >>> counts_quantum(counts + 0.3) is None
    True
    >>> counts_quantum(counts * 0.37 + 0.01) is None   # a scale and an offset: not counts
    True
    """
    v = np.asarray(values, np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)) or np.any(v < 0):
        return None
    positive = np.unique(v[v > 0])
    if positive.size < 2:
        return None
    # the smallest positive value may itself be several counts: the step is the
    # greatest common divisor of the values, found as the smallest positive
    # difference between distinct values, checked against all of them
    steps = np.diff(np.concatenate([[0.0], positive]))
    q = float(steps[steps > positive.max() * 1e-9].min())
    # that difference carries the rounding error of the values (float32: ~1e-7 of the largest),
    # which grows with the count: refit the step by least squares on ever larger values, so
    # that the error times the count stays well under half a count at every stage
    span = 8.0
    while positive[0] + span * q < positive.max():
        sel = positive[positive <= positive[0] + span * q]
        n = np.round(sel / q)
        if not n.any():
            return None  # no value near a whole number of steps: not counts
        q = float((sel * n).sum() / (n * n).sum())
        span *= 4.0
    ratio = v / q
    if ratio.max() > MAX_COUNTS_PER_PIXEL:
        return None  # a step this small relative to the values: continuous values, not counts
    # float32 maps carry a relative rounding error of about 1e-7 on top of the absolute tolerance
    if not np.all(np.abs(ratio - np.round(ratio)) <= INTEGER_TOLERANCE + 1e-6 * ratio):
        return None
    # counts times a scale plus an offset (c * 0.37 + 0.01) are whole multiples of the offset's step
    # too (37 c + 1 steps of 0.01), but their distinct values differ by multiples of a larger step:
    # they are not counts (reading them as 37 c + 1 counts would make them 37 times less noisy)
    n = np.round(positive / q).astype(np.int64)
    if np.gcd.reduce(n - n.min()) > 1:
        return None
    # a step of 1/k (k a small integer) is ambiguous: counts minus a background estimated in
    # windows k times wider than the line also come in steps of 1/k without being counts. The
    # safer reading wins (not counts), unless the maps are normalised to a maximum of 1.
    k = 1.0 / q
    if abs(k - round(k)) <= 1e-4 * k and round(k) <= AMBIGUOUS_STEPS and abs(v.max() - 1.0) > 1e-4:
        return None
    return q


def as_counts(values, quantum):
    """``values / quantum`` rounded to whole counts (see :func:`counts_quantum`): the
    counts behind maps that are counts times a scale, free of the scale's rounding error.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.base.counts import as_counts, counts_quantum
    >>> c = np.random.default_rng(0).poisson(300.0, (8, 8)).astype(np.float32)
    >>> scaled = (c / c.max()).astype(np.float32)
    >>> bool(np.array_equal(as_counts(scaled, counts_quantum(scaled)), c))
    True
    """
    return np.round(np.asarray(values, np.float64) / quantum).astype(np.float32)


def data_kind(values):
    """``"counts"`` (integers), ``"scaled_counts"`` (counts times a scale, see
    :func:`counts_quantum`) or ``"continuous"`` (anything else).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.base.counts import data_kind
    >>> c = np.random.default_rng(1).poisson(2.0, (8, 8))
    >>> data_kind(c), data_kind(c / c.max()), data_kind(c * 0.137), data_kind(c - 0.4)
    ('counts', 'scaled_counts', 'scaled_counts', 'continuous')
    """
    if is_counts(values):
        return "counts"
    if counts_quantum(values) is not None:
        return "scaled_counts"
    return "continuous"


def check_finite(values, what="counts", axes="element, tilt, y, x"):
    """``values`` as a float64 array after checking that none is NaN or infinite.

    The InputError names the first bad position (in the order ``axes``).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.base.counts import check_finite
    >>> check_finite(np.array([[1.0, np.nan]]), "maps", "row, column")
    Traceback (most recent call last):
    ...
    hyperspy_edxtomo.base.errors.InputError: The maps contain NaN or infinite values (first at row, column = (0, 1)).
    """
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(v))[0])
        raise InputError(f"The {what} contain NaN or infinite values (first at {axes} = {bad}).")
    return v


def check_counts(counts, what="counts", integer=True, axes="element, tilt, y, x"):
    """``counts`` as float64 after checking they are X-ray counts: finite, >= 0 and,
    with ``integer``, whole numbers (rounded off the float noise); an InputError
    naming the problem and the fix otherwise.

    Examples
    --------
    >>> from hyperspy_edxtomo.base.counts import check_counts
    >>> check_counts([2.0, 0.0, 1.0]).tolist()
    [2.0, 0.0, 1.0]
    """
    c = check_finite(counts, what, axes)
    if np.any(c < 0):
        n = int((c < 0).sum())
        raise InputError(
            f"The {what} contain {n} negative values: X-ray counts are >= 0. Background-subtracted maps can be made "
            "non-negative with negative='clip' or, better, kept as raw counts with the background modelled "
            "(get_element_maps() does so by default)."
        )
    if integer:
        if not is_counts(c):
            raise InputError(
                f"The {what} are not integer X-ray counts (background-subtracted, normalised or smoothed maps). "
                "Keep raw counts with get_element_maps() (the default keeps them and models the background), "
                "or use a method that works on any maps."
            )
        c = np.round(c)
    return c


def count_split(counts, fraction=0.5, seed=0):
    """Split integer counts binomially into (fit, held-out) parts.

    Each detected count goes to the fit part with probability ``fraction``;
    both parts are independent Poisson data of the same object, with
    ``fraction`` and ``1 - fraction`` of its expected counts. ``seed`` is a
    seed or a ``numpy.random.Generator`` (drawn from, for repeated splits).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.base.counts import count_split
    >>> fit, held = count_split(np.array([[3, 0], [1, 5]]), 0.5, seed=0)
    >>> (fit + held).astype(int).tolist()
    [[3, 0], [1, 5]]
    """
    c = check_counts(counts, "maps to split")
    rng = np.random.default_rng(seed)
    fit = rng.binomial(c.astype(np.int64), fraction)
    return fit.astype(np.float32), (c - fit).astype(np.float32)


def poisson_deviance(counts, expected, eps=1e-9, axis=None):
    """Poisson deviance ``2 sum(y log(y / mu) - (y - mu))`` (lower is better).

    ``axis`` sums over those axes only (e.g. one value per view); None sums all.

    Examples
    --------
    >>> from hyperspy_edxtomo.base.counts import poisson_deviance
    >>> poisson_deviance([2, 0], [2, 0]) < 1e-6, poisson_deviance([2, 0], [1, 1]) > 0
    (True, True)
    """
    y = np.asarray(counts, np.float64)
    mu = np.clip(np.asarray(expected, np.float64), eps, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0) - (y - mu)
    out = 2 * np.sum(term, axis=axis)
    return float(out) if axis is None else out


def in_count_units(maps):
    """Each element's maps in counts where they are counts in disguise.

    Parameters
    ----------
    maps : ndarray
        ``(element, ...)``.

    Returns
    -------
    values : ndarray
        float32; an element whose maps are counts times a scale is divided by
        it (:func:`as_counts`), the others are as given.
    units : ndarray
        Per element, the value of one count in the input (1 when unchanged):
        multiply results in counts by it to return to the maps' scale.
    kinds : list of str
        Per element, :func:`data_kind` after the conversion (``"counts"`` or ``"continuous"``).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.base.counts import in_count_units
    >>> values, units, kinds = in_count_units(np.array([[0, 2, 3], [0, 0.5, 1.0]]))
    >>> values.tolist(), units.tolist(), kinds
    ([[0.0, 2.0, 3.0], [0.0, 1.0, 2.0]], [1.0, 0.5], ['counts', 'counts'])
    """
    values = np.array(maps, np.float32, copy=True)
    units = np.ones(values.shape[0])
    kinds = []
    for e in range(values.shape[0]):
        kind = data_kind(values[e])
        if kind == "scaled_counts":
            units[e] = counts_quantum(values[e])
            values[e] = as_counts(values[e], units[e])
            kind = "counts"
        kinds.append(kind)
    return values, units, kinds


def net_of_background(values, background):
    """The signal part of expected counts: ``values - background`` clipped at 0 (``values`` when no background).

    Where a model holds ``y ~ Poisson(A x + b)``, what goes on without ``b``
    (the brightest slices to select a strength on, Q^S and the FBP of
    ``two_step`` and ``end_to_end``) is this: a pixel whose expected counts
    fall below the background holds no signal, not negative signal.

    Examples
    --------
    >>> import numpy as np
    >>> net_of_background(np.array([3.0, 1.0, 0.5]), np.array([1.0, 1.0, 1.0])).tolist()
    [2.0, 0.0, 0.0]
    >>> net_of_background(np.array([3.0]), None).tolist()
    [3.0]
    """
    if background is None:
        return values
    return np.clip(values - background, 0, None)
