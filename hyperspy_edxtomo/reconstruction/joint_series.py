"""Every element of a tilt series reconstructed together (coupled TV, HAADF fusion).

:class:`JointReconstruction` is the base of the algorithms that solve all
elements at once (:mod:`~hyperspy_edxtomo.reconstruction.multichannel`):
``tv`` with ``couple_elements=True`` and ``fused``. Per series: the maps go
to count units where they are counts in disguise; the strength and the HAADF
weight are chosen on the brightest slices
(:func:`~hyperspy_edxtomo.reconstruction.joint_selection.choose_joint`); the
convergence is measured there, and the halo of slices by which batches
overlap (the 3D TV couples neighbouring slices) is validated there
(:func:`~hyperspy_edxtomo.reconstruction.halo.validate_halo`) when there is
more than one batch; then the batches go through the solver.
"""

import dataclasses
import logging

import numpy as np
import torch
from traits.api import Enum, Range, Union

from hyperspy_edxtomo.base.counts import in_count_units
from hyperspy_edxtomo.base.errors import InputError, warn
from hyperspy_edxtomo.base.progress import progress_bar
from hyperspy_edxtomo.plugins.contract import ReconstructionResult
from hyperspy_edxtomo.reconstruction.haadf import (
    HAADF_HELP,
    guide_field,
    reconstruct_haadf,
)
from hyperspy_edxtomo.reconstruction.halo import HALO_SLAB, validate_halo
from hyperspy_edxtomo.reconstruction.joint_selection import (
    JointData,
    brightest_joint_slices,
    choose_joint,
)
from hyperspy_edxtomo.reconstruction.multichannel import element_scales
from hyperspy_edxtomo.reconstruction.regularised import CONVERGENCE_TOL
from hyperspy_edxtomo.reconstruction.solvers import TV_HALO, cols_to_slices, iterations_cap, sinograms_to_cols
from hyperspy_edxtomo.reconstruction.strength import (
    FALLBACK_RELATIVE,
    MIN_SPLIT_COUNTS,
    MIN_VIEWS,
    reference_strength,
)

_logger = logging.getLogger(__name__)

__all__ = ["JointReconstruction", "JointPlan", "weight_trait", "guide_trait", "reconstruct_jointly", "plan_joint",
           "solve_joint"]

#: the strength, the guide and the weight are chosen on the brightest half of the slices, at least 16 and
#: at most this many: the guide and the HAADF weight are yes/no choices that need held-out data to show
#: their gain (a quarter of 48 slices, as tv's strength uses, left a clear gain of the guide on a 7-tilt
#: dot at 2.0 standard errors, the brightest half at 15)
SELECTION_SLICES = 32


def weight_trait():
    return Union(
        Enum("auto"),
        Range(0.0, None),
        default_value="auto",
        desc="weight of the HAADF term, 1 = as much as the HAADF noise says it is worth; 'auto' chooses it on "
             "held-out X-ray counts (or views), 0 included: the HAADF is used only where it predicts them better",
    )


def _sinograms(arr):
    """``(E, T, Y, X)`` -> ``(E, Y, T, X)`` float32: one sinogram per slice (row)."""
    return np.ascontiguousarray(np.asarray(arr, np.float32).transpose(0, 2, 1, 3))


def guide_trait():
    return Union(
        Enum("auto"),
        Range(0.0, 1.0, exclude_high=True),
        default_value="auto",
        desc="gamma of the directional TV P = I - gamma^2 xi xi^T: how much the elements' TV spares edges along "
             "the HAADF volume's edges, in [0, 1); 'auto' chooses it on held-out X-ray counts (or views), 0 "
             "included",
    )


@dataclasses.dataclass
class JointPlan:
    """What :func:`plan_joint` chose for a series, for :func:`solve_joint`."""

    lam: float
    haadf_weight: float
    guide_strength: float
    data_term: str
    model: dict | None
    guide: np.ndarray | None  # (3, n_slices, n_z, n_x), the HAADF volume's edges, or None
    scales: np.ndarray  # the element magnitudes m_e: part of the problem the strength was chosen for
    chosen: dict
    halo: int = TV_HALO  # slices each batch borrows on each side


def reconstruct_jointly(counts, context, lam="auto", haadf_weight=0.0, iterations=200, data_term="auto",
                        use_haadf=False, guide_strength=0.0, name="coupled_tv", max_iterations=None):
    """Reconstruct all elements together; returns ``(volumes (E, z, y, x), chosen)``.

    ``data_term`` ``"auto"``: the Poisson likelihood where every element's
    maps are counts (or counts in disguise, worked on as counts), least
    squares otherwise. ``max_iterations`` (``"auto"``, a number or None:
    never): how far the convergence check continues while unconverged; the
    batches then run as many iterations as it did. (The selection's solves,
    many more, each run ``min(iterations, 200)``.)
    """
    values, units, kinds = in_count_units(counts)
    background = context.background
    if background is not None:
        background = (np.asarray(background, np.float64) / units[:, None, None, None]).astype(np.float32)
    plan = plan_joint(values, kinds, background, context, lam=lam, haadf_weight=haadf_weight,
                      guide_strength=guide_strength, iterations=iterations, data_term=data_term, use_haadf=use_haadf,
                      name=name, max_iterations=max_iterations)
    plan.chosen["counts_quantum"] = {e: float(u) for e, u in zip(context.elements, units) if u != 1} or None
    volumes = solve_joint(values, background, plan, context, plan.chosen["convergence"]["iterations"], name)
    volumes *= units[:, None, None, None].astype(np.float32)
    return volumes, plan.chosen


def _haadf_sinograms(context):
    haadf = np.ascontiguousarray(np.asarray(context.haadf, np.float32).transpose(1, 0, 2))
    mask = None if context.haadf_mask is None else np.asarray(context.haadf_mask).transpose(1, 0, 2)
    return haadf, mask


def plan_joint(values, kinds, background, context, lam="auto", haadf_weight=0.0, guide_strength=0.0,
               iterations=200, data_term="auto", use_haadf=False, name="coupled_tv", max_iterations=None):
    """Choose the strength, the HAADF guide and weight (:func:`choose_joint`) on the brightest slices of
    ``values`` (``(E, tilt, y, x)``, in count units where they are counts) and measure the convergence there
    (continuing as ``max_iterations`` says: ``chosen["convergence"]["iterations"]`` is what the batches
    should run)."""
    projector, elements = context.projector, list(context.elements)
    negative = bool(np.any(values < 0))
    if data_term == "auto":
        data_term = "poisson" if all(k == "counts" for k in kinds) and not negative else "least_squares"
    if data_term == "poisson" and negative:
        raise InputError(f"{name}: data_term='poisson' needs maps >= 0; these hold negative values: use "
                         "data_term='least_squares'.")
    sino = _sinograms(values)
    back = None if background is None else _sinograms(background)
    haadf_volume = None if not use_haadf else context.haadf_volume
    if use_haadf and context.haadf is None and haadf_volume is None:
        raise InputError(f"method {name!r} needs the HAADF tilt series of the maps (or a HAADF volume): "
                         f"{HAADF_HELP}.")
    haadf, haadf_mask = _haadf_sinograms(context) if use_haadf and context.haadf is not None else (None, None)
    n_slices = sino.shape[1]
    start, stop = brightest_joint_slices(sino, min(SELECTION_SLICES, max(16, n_slices // 2)), back)
    sl = slice(start, stop)
    terms = [data_term] * len(elements)
    # the elements' magnitudes weigh them in the coupled TV: one set for the whole series, so that the
    # selection slab and every batch solve the same problem
    scales = element_scales(projector, _columns_of(sino, projector.device),
                            None if back is None else _columns_of(back, projector.device))
    series = JointData(sino, projector, terms, back, haadf, haadf_mask, scales=scales)
    slab = series.subset(sl)
    criterion = "count_split" if data_term == "poisson" else "held_out_views"
    chosen = {"data_term": data_term, "data_kinds": dict(zip(elements, kinds)), "element_scales": scales.tolist(),
              "selection_slices": [int(start), int(stop - start)]}
    if not use_haadf:
        haadf_weight = guide_strength = 0.0
    guides = {}

    def make_guide(model):
        # the HAADF volume of every slice (the batches need it too), its edges for the slab: the one given,
        # else reconstructed from the HAADF views (when they show the elements)
        if haadf_volume is not None:
            slices = np.ascontiguousarray(np.asarray(haadf_volume, np.float32).transpose(1, 0, 2))  # (y, z, x)
            record = {"reason": "the HAADF volume given (haadf_volume=)"}
        elif model is not None:
            slices, record = reconstruct_haadf(haadf, model["offsets"], projector, iterations, mask=haadf_mask)
        else:
            return None
        guides.update(full=guide_field(slices), record=record)
        return guides["full"][:, sl]

    too_few = criterion == "count_split" and float(slab.sinograms.sum()) < MIN_SPLIT_COUNTS
    few_views = criterion == "held_out_views" and sino.shape[2] < MIN_VIEWS
    if (too_few or few_views) and "auto" in (lam, haadf_weight, guide_strength):
        # nothing to validate on: the centre of the strengths, and no HAADF the user did not ask for
        if lam == "auto":
            lam = FALLBACK_RELATIVE * float(np.exp(np.mean(
                [np.log(max(reference_strength(s, projector, data_term), 1e-30)) for s in slab.sinograms])))
        haadf_weight = 0.0 if haadf_weight == "auto" else haadf_weight
        guide_strength = 0.0 if guide_strength == "auto" else guide_strength
        why = (f"too few counts ({int(slab.sinograms.sum())}, under {MIN_SPLIT_COUNTS}) in the brightest slices "
               "to validate anything by count splitting" if too_few else
               f"{sino.shape[2]} views, under {MIN_VIEWS}: no view can be held out to validate anything")
        reason = (f"{why}: lam {lam:.4g} (the centre of the candidates)"
                  + (", the HAADF only as given" if use_haadf else ""))
        warn(f"{name}: {reason}.")
        chosen["selection_reason"] = reason
    with progress_bar(total=None, desc=f"{name}: choosing the strength" + (" and HAADF weights" if use_haadf else ""),
                      show=context.show_progressbar, unit="solve") as bar:
        picked = choose_joint(slab, criterion, lam=lam, haadf_weight=haadf_weight, guide_strength=guide_strength,
                              iterations=min(int(iterations), 200), elements=elements, seed=context.seed,
                              make_guide=make_guide if use_haadf else None, progress=lambda: bar.update(1))
    chosen.update(picked)
    if "record" in guides:
        chosen["haadf_volume_selection"] = guides["record"]
    model = picked.get("haadf_model")
    lam, weight, gamma = float(picked["lam"]), float(picked["haadf_weight"]), float(picked["guide_strength"])
    slab.guide = None if "full" not in guides else guides["full"][:, sl]
    chosen["convergence"] = _convergence(slab, model, lam, weight, gamma, iterations, name,
                                         iterations_cap(max_iterations, iterations))
    guide = guides.get("full") if gamma > 0 else None
    halo = TV_HALO
    batch = joint_batch(context, len(elements), n_slices)
    if n_slices > batch:
        series.guide = guide
        halo, chosen["slice_halo"] = _check_halo(series, back, model, lam, weight, gamma,
                                                 chosen["convergence"]["iterations"], batch, name)
    _logger.info("%s: lam %.4g, HAADF guide %.3g, HAADF weight %.3g", name, lam, gamma, weight)
    return JointPlan(lam, weight, gamma, data_term, model, guide, scales, chosen, halo)


def joint_batch(context, n_elements, n_slices):
    """Slices per batch of the coupled solvers: a batch holds every element and a dual three times each
    element's size, so ``context.batch_size`` is divided by the number of elements; None: one batch."""
    return int(max(1, min((context.batch_size or n_slices * n_elements) // n_elements, n_slices)))


def _check_halo(series, background, model, lam, weight, gamma, iterations, batch, name):
    """The batches' halo (:func:`validate_halo`) on the brightest :data:`HALO_SLAB` slices of every element
    together, solved as the batches are; returns ``(halo, record)``."""
    first, stop = brightest_joint_slices(series.sinograms, min(HALO_SLAB, series.sinograms.shape[1]), background)
    slab = series.subset(slice(first, stop))
    dev = slab.projector.device

    def solve(keep):
        part = slab.subset(keep)
        b = None if part.background is None else _columns_of(part.background, dev)
        with torch.no_grad():
            return part.solve(part.projector, _columns_of(part.sinograms, dev), lam, iterations, b,
                              part.haadf_term(model, weight), gamma)

    # in this process a batch may borrow more slices than it holds (no dask chunks), at least TV_HALO as before
    halo, record = validate_halo(solve, stop - first, TV_HALO, batch, name, lam, max_halo=max(batch, TV_HALO))
    return halo, {**record, "measured_on_slices": [int(first), int(stop - first)]}


def solve_joint(values, background, plan, context, iterations, name):
    """Every slice of ``values`` (``(E, tilt, y, x)``) under ``plan``: ``(E, z, y, x)`` float32."""
    haadf, haadf_mask = _haadf_sinograms(context) if plan.model is not None else (None, None)
    data = JointData(_sinograms(values), context.projector, [plan.data_term] * values.shape[0],
                     None if background is None else _sinograms(background), haadf, haadf_mask, plan.guide,
                     plan.scales)
    return _solve_batches(data, plan.model, plan.lam, plan.haadf_weight, plan.guide_strength, iterations, context,
                          name, plan.halo)


def _columns_of(sinograms, device):
    """``(E, B, T, X)`` numpy -> ``(E, T * X, B)`` torch."""
    return torch.stack([sinograms_to_cols(s, device) for s in sinograms])


def _convergence(slab, model, lam, weight, gamma, iterations, name, max_iterations):
    dev = slab.projector.device
    b = None if slab.background is None else _columns_of(slab.background, dev)
    with torch.no_grad():
        _, info = slab.solve(slab.projector, _columns_of(slab.sinograms, dev), lam, iterations, b,
                             slab.haadf_term(model, weight), gamma, return_info=True, max_iterations=max_iterations)
    # the iterations run (more than asked where the solve continued), the most it could
    info = {**info, "max_iterations": int(max_iterations), "tolerance": CONVERGENCE_TOL}
    info["converged"] = bool(abs(info["relative_change"]) <= CONVERGENCE_TOL)
    if not info["converged"]:
        warn(f"{name} has not converged at lam={lam:.4g} after {info['iterations']} iterations: its objective still "
             f"changed by {100 * info['relative_change']:.1f} % over the last half of them (tolerance "
             f"{100 * CONVERGENCE_TOL:.0f} %). Raise max_iterations.")
    return info


def _solve_batches(data, model, lam, weight, gamma, iterations, context, name, halo):
    """Batches of slices (:func:`joint_batch`) with a halo of ``halo`` slices on each side, every element
    together, in this process: ``(E, z, y, x)``."""
    projector = data.projector
    E, n_y = data.sinograms.shape[:2]
    batch = joint_batch(context, E, n_y)
    dev = projector.device
    out = np.zeros((E, projector.n_z, n_y, projector.n_x), np.float32)
    starts = list(range(0, n_y, batch))
    for s0 in progress_bar(starts, desc=f"Reconstructing ({name}, all elements)", show=context.show_progressbar,
                           unit="batch"):
        s1 = min(s0 + batch, n_y)
        lo, hi = (max(0, s0 - halo), min(n_y, s1 + halo)) if len(starts) > 1 else (s0, s1)
        part = data.subset(slice(lo, hi))
        b = None if part.background is None else _columns_of(part.background, dev)
        with torch.no_grad():
            x = part.solve(projector, _columns_of(part.sinograms, dev), lam, iterations, b,
                           part.haadf_term(model, weight), gamma)
        for e in range(E):
            slices = cols_to_slices(x[e], projector.slice_shape)  # (B, n_z, n_x)
            out[e, :, s0:s1] = slices[s0 - lo: s0 - lo + (s1 - s0)].transpose(1, 0, 2)
    return out


class JointReconstruction:
    """Mixin for algorithms that reconstruct all elements together; the class
    sets ``lam``, ``iterations``, ``max_iterations``, ``data_term`` and, with a
    HAADF term, ``haadf_weight``, and says in :meth:`joint_options` what to run."""

    accepts_background = True

    def joint_options(self):
        """``{"use_haadf": bool, "haadf_weight": ..., "guide_strength": ...}``."""
        raise NotImplementedError

    def reconstruct_series(self, counts, context):
        if len(context.elements) < 1:
            raise InputError("No elements to reconstruct.")
        options = self.joint_options()
        volumes, chosen = reconstruct_jointly(counts, context, lam=self.lam, iterations=self.iterations,
                                              data_term=self.data_term, name=self.name,
                                              max_iterations=self.max_iterations, **options)
        self.chosen = chosen
        params = self.parameter_values()
        return ReconstructionResult(volumes, [params] * len(context.elements))
