"""Strength of the coupled TV and weight of the HAADF term, from held-out X-ray data.

The same criteria as :mod:`~hyperspy_edxtomo.reconstruction.strength`, over
all elements at once: count splitting for counts (every element's counts
split 80/20, the held-out 20 % scored by their Poisson deviance, summed over
the elements, one score per view) and held-out views for other maps. The
HAADF series is never scored: it is what may or may not help predict X-ray
counts the reconstruction did not see.

:func:`choose_joint` runs these searches on the brightest slices:

1. the TV strength without the HAADF (a grid around
   :func:`~hyperspy_edxtomo.reconstruction.strength.reference_strength`,
   widened when the best is at an edge, then refined);
2. the HAADF contrasts ``c_e`` and offsets, fitted to that reconstruction
   (:func:`~hyperspy_edxtomo.reconstruction.haadf.fit_contrast`);
3. the strength of the HAADF guide (directional TV along the HAADF volume's
   edges, :func:`~hyperspy_edxtomo.reconstruction.haadf.guide_field`),
   0 included;
4. the HAADF weight on a grid, 0 included;
5. with a guide or a weight kept, the TV strength again around the first choice.

In 3 and 4 a candidate above 0 is kept only when it predicts the held-out
data better than 0 by more than two standard errors of the paired
difference (over views or folds); otherwise 0 stays and the reason is
recorded: what the HAADF cannot show to help, it does not change.
Every candidate, score and reason goes into the record.
"""

import numpy as np
import torch

from hyperspy_edxtomo.base.counts import (
    count_split,
    net_of_background,
    poisson_deviance,
)
from hyperspy_edxtomo.base.errors import InputError, warn
from hyperspy_edxtomo.base.validation import paired_gain
from hyperspy_edxtomo.reconstruction.haadf import (
    apparent_exponent,
    fit_contrast,
    noise_level,
)
from hyperspy_edxtomo.reconstruction.multichannel import (
    HaadfTerm,
    coupled_tv,
    project_elements,
)
from hyperspy_edxtomo.reconstruction.solvers import sinograms_to_cols
from hyperspy_edxtomo.reconstruction.strength import (
    DEFAULT_GRID,
    FIT_FRACTION,
    MIN_VIEWS,
    ScoreTable,
    reference_strength,
    search_log_grid,
    sub_projector,
    view_folds,
    view_weights,
)

__all__ = ["JointData", "choose_joint", "WEIGHT_GRID", "brightest_joint_slices"]

#: HAADF weights tried, relative to the weight at which the HAADF counts as much as its own noise says
WEIGHT_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: refinement candidates of the strength with the HAADF guide and term, relative to the strength without
#: them (a guided TV tolerates a stronger strength: edges along the guide cost little)
RESTRENGTH = (1 / 3, 1.0, 3.0, 10.0)
#: strengths of the HAADF guide tried: gamma of P = I - gamma^2 xi xi^T (edges along the guide's cost a
#: factor sqrt(1 - gamma^2 |xi|^2) of the TV: 0.71, 0.44, 0.14 where |xi| ~ 1)
GUIDE_GRID = (0.7, 0.9, 0.99)


def _cols(arr, device):
    """``(E, B, T, X)`` numpy -> ``(E, T * X, B)`` torch."""
    return torch.stack([sinograms_to_cols(a, device) for a in arr])


def brightest_joint_slices(sinograms, max_slices, background=None):
    """The ``max_slices`` contiguous slices holding the most signal of all elements together
    (``sinograms`` ``(E, n_slices, T, X)``): ``(start, stop)``."""
    n = sinograms.shape[1]
    if n <= max_slices:
        return 0, n
    signal = net_of_background(sinograms, background)
    # each element weighed by its own total: a bright element does not choose the slab alone
    totals = np.abs(signal).sum(axis=(2, 3))
    per_slice = (totals / np.maximum(totals.sum(axis=1, keepdims=True), 1e-30)).sum(axis=0)
    start = int(np.argmax(np.convolve(per_slice, np.ones(max_slices), mode="valid")))
    return start, start + max_slices


class JointData:
    """Slices of every element, with what the solves need: sinograms ``(E, B, T, X)`` (counts for the
    Poisson terms), background, data terms, HAADF views ``(B, T, X)`` and mask (or None), the guide and
    the element scales."""

    def solve(self, projector, ys, lam, iterations, backgrounds=None, haadf=None, guide=0.0, return_info=False,
              max_iterations=None):
        """:func:`coupled_tv` with this series' data terms, scales and guide."""
        return coupled_tv(projector, ys, lam, iterations, self.data_terms, backgrounds, haadf, scales=self.scales,
                          guide=self.guide_tensor(guide), return_info=return_info, max_iterations=max_iterations)

    def subset(self, sl):
        """The same series restricted to the slices ``sl``."""
        return JointData(self.sinograms[:, sl], self.projector, self.data_terms,
                         None if self.background is None else self.background[:, sl],
                         None if self.haadf is None else self.haadf[sl],
                         None if self.haadf_mask is None else self.haadf_mask[sl],
                         None if self.guide is None else self.guide[:, sl], self.scales)

    def __init__(self, sinograms, projector, data_terms, background=None, haadf=None, haadf_mask=None, guide=None,
                 scales=None):
        self.sinograms = np.asarray(sinograms, np.float32)
        #: the series' element magnitudes ``m_e`` (:func:`~hyperspy_edxtomo.reconstruction.multichannel.element_scales`):
        #: part of the problem, the same for every solve of the series
        self.scales = scales
        #: the HAADF volume's edge field ``(3, B, n_z, n_x)`` (:func:`~hyperspy_edxtomo.reconstruction.haadf.guide_field`)
        self.guide = guide
        self.background = None if background is None else np.asarray(background, np.float32)
        self.projector = projector
        self.data_terms = list(data_terms)
        self.haadf = None if haadf is None else np.asarray(haadf, np.float32)
        self.haadf_mask = None if haadf_mask is None else np.asarray(haadf_mask, bool)

    def guide_tensor(self, strength):
        """The guide scaled by ``strength`` in [0, 1) on the projector's device, or None."""
        if self.guide is None or strength <= 0:
            return None
        return torch.from_numpy(np.ascontiguousarray(self.guide * np.float32(strength))).to(self.projector.device)

    def haadf_term(self, model, weight, keep=None):
        """A :class:`HaadfTerm` for the views ``keep`` (None: all) under ``model`` (:func:`fit_contrast`)."""
        if self.haadf is None or model is None or weight <= 0:
            return None
        keep = np.arange(self.haadf.shape[1]) if keep is None else np.asarray(keep)
        dev = self.projector.device
        n_x = self.haadf.shape[2]
        offsets = np.repeat(np.asarray(model["offsets"], np.float32)[keep], n_x)[:, None]
        mask = None if self.haadf_mask is None else sinograms_to_cols(self.haadf_mask[:, keep].astype(np.float32), dev)
        return HaadfTerm(views=sinograms_to_cols(self.haadf[:, keep], dev), coefficients=tuple(model["coefficients"]),
                         offsets=torch.from_numpy(offsets).to(dev), noise=float(model["noise"]), weight=float(weight),
                         mask=mask)


class _JointCountSplit:
    criterion = "count_split"

    def __init__(self, data, fraction, seed):
        self.data, self.fraction = data, fraction
        fit, held = count_split(data.sinograms, fraction, seed)
        dev = data.projector.device
        self.y_fit = _cols(fit / fraction, dev)
        self.b = None if data.background is None else _cols(data.background, dev)
        self.held = _cols(held, dev).cpu().numpy()

    def __call__(self, lam, weight, model, iterations, guide=0.0):
        d = self.data
        with torch.no_grad():
            x = d.solve(d.projector, self.y_fit, lam, iterations, self.b, d.haadf_term(model, weight), guide)
            mu = project_elements(d.projector, x)
            if self.b is not None:
                mu = mu + self.b
            mu = mu.cpu().numpy() * (1 - self.fraction)
        n_t = d.projector.n_tilts
        # (E, T * X, B) -> deviance per view, summed over elements and columns
        per_row = poisson_deviance(self.held, mu, axis=(0, 2))
        return per_row.reshape(n_t, -1).sum(axis=1).tolist()


class _JointHeldOutViews:
    criterion = "held_out_views"

    def __init__(self, data):
        self.data = data
        sino = data.sinograms
        n_t = sino.shape[2]
        if n_t < MIN_VIEWS:
            raise InputError(f"held-out views need at least {MIN_VIEWS} views, got {n_t}")
        signal = sino if data.background is None else sino - data.background
        dev = data.projector.device
        self.folds = []
        for held in view_folds(n_t):
            keep = np.setdiff1d(np.arange(n_t), held)
            self.folds.append({
                "keep": keep,
                "keep_fraction": keep.size / n_t,
                "projector": sub_projector(data.projector, keep),
                "y": _cols(sino[:, :, keep], dev),
                "b": None if data.background is None else _cols(data.background[:, :, keep], dev),
                "predict": sub_projector(data.projector, held),
                "target": np.asarray(signal[:, :, held], np.float64),
                "weights": np.stack([view_weights(s) for s in signal[:, :, held]]),
            })

    def __call__(self, lam, weight, model, iterations, guide=0.0):
        d = self.data
        scores = []
        with torch.no_grad():
            for f in self.folds:
                # fewer views shrink both data terms alike: the TV strength shrinks with them, the weight stays
                x = d.solve(f["projector"], f["y"], lam * f["keep_fraction"], iterations, f["b"],
                            d.haadf_term(model, weight, f["keep"]), guide)
                pred = project_elements(f["predict"], x).cpu().numpy()  # (E, held * X, B)
                target = f["target"]  # (E, B, held, X)
                pred = pred.transpose(0, 2, 1).reshape(target.shape)
                # each element's error relative to its own weights: no element outweighs the others by its scale
                err = (f["weights"] * (target - pred) ** 2).sum(axis=(1, 2, 3))
                norm = (f["weights"] * target**2).sum(axis=(1, 2, 3))
                scores.append(float((err / np.maximum(norm, 1e-30)).sum()))
        return scores


def _reference(data):
    """The geometric mean over the elements of their reference strengths."""
    refs = [reference_strength(s, data.projector, t) for s, t in zip(data.sinograms, data.data_terms)]
    refs = [r for r in refs if r > 0] or [1.0]
    return float(np.exp(np.mean(np.log(refs))))


def choose_joint(data, criterion, lam="auto", haadf_weight="auto", guide_strength="auto", iterations=200,
                 elements=(), make_guide=None, fraction=FIT_FRACTION, seed=0, progress=None):
    """Choose the TV strength, the HAADF guide's strength and the HAADF weight on held-out data.

    Parameters
    ----------
    data : JointData
        The selection slab.
    criterion : {"count_split", "held_out_views"}
    lam, haadf_weight, guide_strength : "auto" or float
        A number is used as given (the others may still be chosen).
    iterations : int
        Iterations of every candidate's solve.
    elements : sequence of str
        Names, for the messages and the record.
    make_guide : callable or None
        ``make_guide(model) -> (3, B, n_z, n_x) or None``: the HAADF edge field of the slab's slices, given
        the fitted HAADF model (None when the HAADF views are unusable or absent); None: no guide.

    Returns
    -------
    chosen : dict
        ``lam``, ``guide_strength`` and ``haadf_weight`` (0 when unused), ``haadf_model`` (contrasts,
        offsets, noise, r2) or None, and the record of every search that ran: ``lam_selection``,
        ``guide_selection``, ``haadf_weight_selection``, ``lam_with_haadf_selection``.
    """
    built = {}

    def get_scorer():
        # built only when something is chosen: with every setting given, nothing is held out (and
        # nothing needs 5 views)
        if "scorer" not in built:
            built["scorer"] = (_JointCountSplit(data, fraction, seed) if criterion == "count_split"
                               else _JointHeldOutViews(data))
        return built["scorer"]

    def scorer(*args, **kwargs):
        return get_scorer()(*args, **kwargs)

    if "auto" in (lam, haadf_weight, guide_strength):
        get_scorer()

    ref = _reference(data)
    chosen = {"criterion": criterion}
    reason_lam = ("lowest Poisson deviance of held-out counts, all elements" if criterion == "count_split"
                  else "lowest weighted squared error of held-out views, all elements")
    if lam == "auto":
        lam_scores = ScoreTable(lambda r: scorer(r * ref, 0.0, None, iterations), progress)
        lam0 = search_log_grid(lam_scores, DEFAULT_GRID, refine=2) * ref
        chosen["lam_selection"] = {**lam_scores.curve(ref), "chosen": lam0, "reason": reason_lam}
    else:
        lam0 = float(lam)
    chosen.update(lam=lam0, guide_strength=0.0, haadf_weight=0.0, haadf_model=None)
    model = None
    if data.haadf is not None:
        # with counts split, on the fit part only: the held-out counts stay unseen by everything scored
        fit_part = built.get("scorer")
        model = _fit_model(data, lam0, iterations, elements, *((fit_part.y_fit, fit_part.b)
                                                               if isinstance(fit_part, _JointCountSplit) else ()))
        chosen["haadf_model"] = model
        if not any(c > 0 for c in model["coefficients"]):
            reason = ("the HAADF contrast fitted to the X-ray reconstruction is 0 for every element (no HAADF signal "
                      "where the elements are, or an inverted image such as bright field): the HAADF views are not "
                      "used")
            warn(f"fused: {reason}.")
            chosen["haadf_weight_selection"] = {"reason": reason}
            model = None
        else:
            for e, c in zip(elements, model["coefficients"]):
                if c <= 0:
                    warn(f"fused: element {e} contributes nothing measurable to the HAADF (contrast fitted to 0): "
                         "the HAADF term does not inform it.")
    # 1. the HAADF's edges as a guide of the TV
    gamma = 0.0
    if make_guide is not None and guide_strength != 0:
        data.guide = make_guide(model)
    if data.guide is not None:
        if guide_strength == "auto":
            g_scores = ScoreTable(lambda g: scorer(lam0, 0.0, model, iterations, guide=g), progress)
            g_scores(0.0)
            for g in GUIDE_GRID:
                g_scores(g)
            gamma, record = _significant(g_scores, "the HAADF edges as a guide of the TV (strength {:.3g})",
                                         "the TV without a guide")
            chosen["guide_selection"] = record
        else:
            gamma = float(guide_strength)
    chosen["guide_strength"] = gamma
    # 2. the HAADF as data
    weight = 0.0
    if model is not None:
        if haadf_weight == "auto":
            w_scores = ScoreTable(lambda w: scorer(lam0, w, model, iterations, guide=gamma), progress)
            w_scores(0.0)
            search_log_grid(w_scores, WEIGHT_GRID, refine=1)
            weight, record = _significant(w_scores, "the HAADF term at weight {:.3g}", "no HAADF term")
            chosen["haadf_weight_selection"] = record
        else:
            weight = float(haadf_weight)
    chosen["haadf_weight"] = weight
    # 3. the strength again, with what the HAADF brought
    if lam == "auto" and (gamma > 0 or weight > 0):
        l_scores = ScoreTable(lambda r: scorer(r * lam0, weight, model, iterations, guide=gamma), progress)
        best_r = search_log_grid(l_scores, RESTRENGTH, refine=1)
        chosen["lam"] = float(best_r * lam0)
        chosen["lam_with_haadf_selection"] = {**l_scores.curve(lam0), "chosen": chosen["lam"],
                                              "reason": reason_lam + ", with the HAADF guide and term chosen"}
    return chosen


def _significant(scores, what, baseline):
    """The best positive candidate if it beats candidate 0 by more than 2 standard errors (paired over views
    or folds), else 0; with the record and its reason."""
    best = min((k for k in scores.folds if k > 0), key=scores)
    gain, se = paired_gain(scores.folds[0.0], scores.folds[best])
    keep = gain > 2 * se
    name = what.format(best)
    reason = (f"{name} predicts the held-out X-ray data better than {baseline} by {gain:.3g} +- {se:.3g}" if keep
              else f"{name} gains {gain:.3g} +- {se:.3g} over {baseline}, not more than 2 standard errors: "
                   f"{baseline} is kept")
    return (float(best) if keep else 0.0), {**scores.curve(), "best": float(best), "gain": gain,
                                            "standard_error": se, "chosen": float(best) if keep else 0.0,
                                            "reason": reason}


def _fit_model(data, lam, iterations, elements, ys=None, b=None):
    """HAADF contrasts and offsets fitted to the coupled-TV reconstruction of the slab's X-ray data
    (``ys``, ``b`` in column layout; None: all of it)."""
    dev = data.projector.device
    if ys is None:
        ys = _cols(data.sinograms, dev)
        b = None if data.background is None else _cols(data.background, dev)
    with torch.no_grad():
        x = data.solve(data.projector, ys, lam, iterations, b)
        proj = project_elements(data.projector, x).cpu().numpy()  # (E, T * X, B)
    E, B = proj.shape[0], proj.shape[2]
    n_t, n_x = data.haadf.shape[1:]
    proj = proj.transpose(0, 2, 1).reshape(E, B, n_t, n_x)
    fit = fit_contrast(data.haadf, proj, data.haadf_mask)
    fit["noise"] = noise_level(data.haadf, data.haadf_mask)
    fit["apparent_exponent"] = apparent_exponent(fit["coefficients"], elements) if len(elements) else None
    fit["elements"] = list(elements)
    return fit
