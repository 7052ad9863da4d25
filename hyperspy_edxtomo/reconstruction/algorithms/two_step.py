"""two_step: the paper's unsupervised deep reconstruction (Han et al. 2021, Fig. 1d).

Q^D denoising, an MBIR volume, re-projection at every ``angle_step`` degrees,
a projection enhancer Q^S trained only on self-consistency with the measured
views, then FBP from the enhanced full-angle projections.
"""

import dataclasses
import time

import numpy as np
from traits.api import Bool, Dict, Enum, Range, Str

from hyperspy_edxtomo.base.counts import in_count_units, net_of_background
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.deep.networks import torch_device
from hyperspy_edxtomo.plugins.contract import (
    ReconstructionAlgorithm,
    ReconstructionResult,
)
from hyperspy_edxtomo.plugins.hookspecs import hookimpl
from hyperspy_edxtomo.plugins.manager import get_algorithm
from hyperspy_edxtomo.plugins.slices import reconstruct_elements
from hyperspy_edxtomo.reconstruction import deep_models as deep
from hyperspy_edxtomo.reconstruction.deep_models import check_tilt_count, denoise_stage
from hyperspy_edxtomo.reconstruction.filters import FILTERS
from hyperspy_edxtomo.reconstruction.joint_series import plan_joint, solve_joint
from hyperspy_edxtomo.reconstruction.projector import Projector
from hyperspy_edxtomo.reconstruction.regularised import strength_trait


class TwoStep(ReconstructionAlgorithm):
    """Q^D -> MBIR -> re-projection -> Q^S -> FBP, no ground truth anywhere.

    The volume is zero outside the cylinder inscribed in the field of view
    (the part every view sees): the full-angle re-projections of the square
    slices would be truncated there.
    """

    name = "two_step"
    summary = "Paper's two-step method: Q^D denoising, MBIR, 1-deg re-projection, self-consistent Q^S, FBP"

    denoiser = Str("auto", desc="Q^D: 'auto' ('deep' for counts; for maps that are not counts, on which count "
                                "splitting cannot train, the blind-spot 'deep' or a 'gaussian', whichever predicts "
                                "held-out pixels better: denoiser 'auto'), an installed denoiser ('deep', "
                                "'gaussian', ...) or 'none' (maps already denoised)")
    denoiser_parameters = Dict(desc="parameters of the denoiser, e.g. {'steps': 800}")
    mbir = Enum("tv", "l1", "fused", desc="the model-based reconstruction M: 'tv', 'l1' or 'fused' (all elements "
                                          "together with the HAADF series, as method='fused')")
    lam = strength_trait("MBIR regularisation")
    mbir_iterations = Range(1, 100_000, 150, desc="iterations of the MBIR solver")
    mbir_input = Enum("denoised", "counts", desc="what M is reconstructed from: the Q^D output (paper) or raw counts")
    angle_step = Range(0.1, 10.0, 1.0, desc="re-projection step in degrees over [-90, 90)")
    enhancer_steps = Range(0, 1_000_000, 300, desc="training steps of Q^S (0: no enhancement, plain re-projections)")
    enhancer_channels = Range(2, 256, 16, desc="feature channels of Q^S's top level")
    enhancer_levels = Range(1, 6, 3, desc="resolution levels of Q^S")
    enhancer_batch = Range(1, 1024, 8, desc="patches per Q^S training step")
    patch_size = Range(8, 4096, 64, desc="width of Q^S's square training patches, pixels")
    learning_rate = Range(0.0, 1.0, 1e-3, exclude_low=True, desc="Adam learning rate of Q^S (cosine decay)")
    target = Enum("denoised", "counts", desc="Q^S's self-consistency target at the measured angles")
    final = Enum("fbp", "sirt", desc="final reconstruction from the enhanced projections")
    final_iterations = Range(1, 100_000, 20, desc="iterations when final='sirt'")
    filter = Enum(*FILTERS, desc="FBP filter of the final reconstruction")
    constrain = Bool(True, desc="clip negative values of the final volume to 0")

    #: the background b of y ~ Poisson(A x + b): Q^D denoises the counts, the MBIR models b,
    #: Q^S and the final reconstruction work on the signal y_d - b
    accepts_background = True
    #: trains networks on the data (Q^D, Q^S) / runs Q^D itself; the context's seed seeds Q^S, the
    #: strength selection and Q^D (unless the denoiser's parameters set a seed of its own)
    learned = True
    denoises = True

    @property
    def uses_haadf(self):
        return self.mbir == "fused"

    def reconstruct_series(self, counts, context):
        t0 = time.perf_counter()
        elements, projector, background = list(context.elements), context.projector, context.background
        show_progressbar = context.show_progressbar
        # everything that can refuse the input is checked before any training
        check_tilt_count(projector, self.name)
        check_enhancer_size(counts.shape[-2:], self.enhancer_levels, self.enhancer_steps)
        # counts in disguise (normalised maps) are the counts times a scale: work on the counts
        counts, units, kinds = in_count_units(counts)
        background = (None if background is None
                      else (np.asarray(background, np.float64) / units[:, None, None, None]).astype(np.float32))
        denoiser, params = self.denoiser, dict(self.denoiser_parameters)
        if denoiser == "auto":
            # counts: the count-splitting network; other maps (count splitting cannot train on them):
            # the blind-spot network or a Gaussian, whichever predicts held-out pixels better; maps
            # with negative values: as they are
            if all(k == "counts" for k in kinds):
                denoiser = "deep"
            elif np.all(counts >= 0):
                denoiser, params = "auto", {"deep_parameters": params}
            else:
                denoiser = "none"
        stages = {"data_kinds": dict(zip(elements, kinds)), "denoiser": denoiser}
        device = torch_device(projector.cuda)
        # the MBIR's data term and strength, from the raw maps (held-out counts or views)
        mbir_cls = get_algorithm(self.mbir)
        lams, selections, data_terms, margins = [], [], [], []
        plan = None
        if self.mbir == "fused":
            # all elements and the HAADF together: strength, HAADF guide and weight from the raw counts
            plan = plan_joint(counts, kinds, background, context, lam=self.lam, haadf_weight="auto",
                              guide_strength="auto", iterations=self.mbir_iterations, use_haadf=True,
                              name="two_step MBIR (fused)", max_iterations="auto")
        for e in range(len(elements) if plan is None else 0):
            lam, extra, data_term, margin = self.lam, {}, "least_squares", "auto"
            if lam == "auto":
                # strength (for tv on counts the data term), field margin: validated on held-out raw data
                probe = mbir_cls.create(iterations=self.mbir_iterations)
                probe.prepare(_sino(counts[e]), context, background=None if background is None else _sino(background[e]))
                lam, extra, data_term = probe.chosen["lam"], probe.chosen, probe.chosen["data_term"]
                margin = probe.chosen["field_margin"]
            lams.append(float(lam))
            data_terms.append(data_term)
            margins.append(margin)
            selections.append({k: v for k, v in extra.items() if k != "lam"})
        stages["strength_seconds"] = round(time.perf_counter() - t0, 3)
        # 1. Q^D: expected counts (background included)
        t = time.perf_counter()
        y_d, qd_model, qd_used = denoise_stage(counts, elements, projector, denoiser, params, context.seed,
                                             show_progressbar)
        stages["denoise_seconds"] = round(time.perf_counter() - t, 3)
        # 2. M: MBIR with the chosen strength and the background in its model
        t = time.perf_counter()
        source = y_d if self.mbir_input == "denoised" else counts
        M, mbir_used = [], []
        if plan is not None:
            M = list(solve_joint(source, background, plan, context, plan.chosen["convergence"]["iterations"],
                                 "two_step MBIR (fused)"))
            mbir_used = [{"lam": plan.lam, **{k: v for k, v in plan.chosen.items() if k != "lam"}}] * len(elements)
        for e, element in enumerate(elements if plan is None else []):
            alg = mbir_cls.create(lam=lams[e], iterations=self.mbir_iterations, field_margin=margins[e],
                                  **_data_term(self.mbir, data_terms[e]))
            vol, _ = reconstruct_elements(alg, source[e : e + 1], dataclasses.replace(context, elements=(element,)),
                                          f"two_step MBIR ({self.mbir})",
                                          background=None if background is None else background[e : e + 1])
            M.append(vol[0])
            mbir_used.append({"lam": lams[e], "data_term": data_terms[e], **selections[e]})
        # Q^S and the final reconstruction see the signal only
        y_d = net_of_background(y_d, background)
        # only the cylinder inscribed in the field of view is seen from every
        # angle: outside it the full-angle re-projections would be truncated,
        # and their FBP rings at the field-of-view edge (a pattern that both
        # halves of a count split share, which would fake FSC at Nyquist)
        circle = _inscribed_circle(projector.n_z, projector.n_x)[None, :, None, :]
        M = np.stack(M) * circle
        stages["mbir_seconds"] = round(time.perf_counter() - t, 3)
        # 3. R: re-projection at the measured and at every angle_step degrees
        t = time.perf_counter()
        dense = Projector(deep.dense_angles(self.angle_step), projector.n_x, projector.n_z,
                          axis_offset_px=projector.axis_offset_px, cuda=projector.cuda)
        reproj_measured = _project(M, projector)
        reproj_dense = _project(M, dense)
        stages["reprojection_seconds"] = round(time.perf_counter() - t, 3)
        # 4. Q^S, trained on self-consistency at the measured angles only
        t = time.perf_counter()
        target = y_d if self.target == "denoised" else (counts if background is None else counts - background)
        if self.enhancer_steps > 0:
            net, scale, qs_log = deep.train_enhancer(
                reproj_measured.transpose(1, 0, 2, 3), np.asarray(target, np.float32).transpose(1, 0, 2, 3),
                channels=self.enhancer_channels, levels=self.enhancer_levels, steps=self.enhancer_steps,
                batch_size=self.enhancer_batch, patch_size=self.patch_size, learning_rate=self.learning_rate,
                seed=context.seed, device=device, show_progressbar=show_progressbar,
            )
            enhanced = deep.apply_enhancer(net, scale, reproj_dense.transpose(1, 0, 2, 3), device).transpose(1, 0, 2, 3)
        else:
            qs_log = {"deviance_reprojection": deep.deviance_per_element(
                np.asarray(target).transpose(1, 0, 2, 3), reproj_measured.transpose(1, 0, 2, 3))}
            enhanced = reproj_dense
        wedge = deep.wedge_check(reproj_dense.transpose(1, 0, 2, 3), enhanced.transpose(1, 0, 2, 3),
                                 dense.tilts_deg, projector.tilts_deg)
        stages["enhancer_seconds"] = round(time.perf_counter() - t, 3)
        # 5. the final volume from the full-angle enhanced projections
        t = time.perf_counter()
        if self.final == "fbp":
            final = get_algorithm("fbp").create(filter=self.filter, constrain=self.constrain)
        else:
            final = get_algorithm("sirt").create(iterations=self.final_iterations, constrain=self.constrain)
        volume, _ = reconstruct_elements(final, enhanced, dataclasses.replace(context, projector=dense,
                                                                                tilts_deg=dense.tilts_deg),
                                         f"two_step {self.final}")
        volume *= circle * units[:, None, None, None]
        fbp_in = get_algorithm("fbp").create(filter=self.filter)
        fbp_denoised, _ = reconstruct_elements(fbp_in, y_d, dataclasses.replace(context, show_progressbar=False),
                                               "FBP of Q^D y")
        # intermediates on the scale of the maps given
        scale = units[:, None, None, None]
        y_d, M, fbp_denoised = y_d * scale, M * scale, fbp_denoised * scale
        reproj_dense, enhanced = reproj_dense * scale, enhanced * scale
        stages["final_seconds"] = round(time.perf_counter() - t, 3)
        stages["seconds"] = round(time.perf_counter() - t0, 3)

        qs_summary = {k: v for k, v in qs_log.items() if k != "losses"}
        intermediates = {
            "denoised": ("maps", y_d, projector.tilts_deg),
            "mbir": ("volume", M),
            "reprojections": ("maps", reproj_dense, dense.tilts_deg),
            "enhanced": ("maps", enhanced, dense.tilts_deg),
            "fbp_denoised": ("volume", fbp_denoised),
            "report": ("table", {"enhancer": qs_log, "wedge_check": wedge, "timings": stages}),
            "denoiser_model": ("object", qd_model),
        }
        base = {k: v for k, v in self.parameter_values().items() if k != "lam"}
        used = []
        for e in range(len(elements)):
            used.append({
                **base,
                "lam": mbir_used[e]["lam"],
                "mbir_lam_selection": {k: v for k, v in mbir_used[e].items() if k != "lam"},
                "denoiser_used": qd_used,
                "data_kind": kinds[e],
                "counts_quantum": None if units[e] == 1 else float(units[e]),
                "enhancer": {k: (v[e] if isinstance(v, list) else v) for k, v in qs_summary.items()},
                "wedge_relative_change": {k: v[e] for k, v in wedge["relative_change"].items()},
                "timings": stages,
            })
        return ReconstructionResult(volume, used, intermediates)


def _sino(maps_of_one_element):
    """(tilt, y, x) -> sinograms (y, tilt, x), float32."""
    return np.ascontiguousarray(np.asarray(maps_of_one_element).transpose(1, 0, 2), np.float32)


def _data_term(mbir, data_term):
    # l1 is least squares only; tv takes the data term
    return {"data_term": data_term} if mbir == "tv" else {}


def check_enhancer_size(view_shape, levels, steps):
    """Refuse, before any training, views too small for Q^S's U-Net."""
    multiple = 2 ** (int(levels) - 1)
    if steps > 0 and min(view_shape) < multiple:
        raise InputError(f"Views of {view_shape[0]}x{view_shape[1]} pixels are too small for Q^S with "
                         f"{levels} levels (at least {multiple} pixels): lower enhancer_levels.")


def _inscribed_circle(n_z, n_x):
    """Mask (n_z, n_x) of the slice's inscribed circle (ellipse), edge softened over a pixel."""
    z = (np.arange(n_z) - (n_z - 1) / 2) / (n_z / 2)
    x = (np.arange(n_x) - (n_x - 1) / 2) / (n_x / 2)
    r = np.sqrt(z[:, None] ** 2 + x[None, :] ** 2)
    edge = 2.0 / min(n_z, n_x)
    return np.clip((1 - r) / edge + 0.5, 0, 1).astype(np.float32)


def _project(volume, projector):
    """Re-project ``(element, z, y, x)`` to ``(element, angle, y, x)``."""
    out = []
    for v in volume:
        sino = projector.forward(np.ascontiguousarray(v.transpose(1, 0, 2), np.float32))  # (y, angle, x)
        out.append(np.clip(sino, 0, None).transpose(1, 0, 2))
    return np.stack(out).astype(np.float32)


@hookimpl
def edxtomo_reconstruction_algorithms():
    return [TwoStep]
