"""end_to_end: one pass of a trained 3D U-Net T over FBP(Q^D y) (Han et al. 2021, Fig. 1c).

T is trained on the user's own series by ``hyperspy_edxtomo.train_end_to_end``
(pairs made by running ``two_step``); this plugin only applies saved weights.
"""

import dataclasses
import time

from traits.api import Bool, Dict, Enum, Str

from hyperspy_edxtomo.base.counts import net_of_background
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.plugins.contract import (
    ReconstructionAlgorithm,
    ReconstructionResult,
)
from hyperspy_edxtomo.plugins.hookspecs import hookimpl
from hyperspy_edxtomo.plugins.manager import get_algorithm
from hyperspy_edxtomo.plugins.slices import reconstruct_elements
from hyperspy_edxtomo.reconstruction.deep_models import (
    EndToEndModel,
    check_tilt_count,
    denoise_stage,
)
from hyperspy_edxtomo.reconstruction.filters import FILTERS

HOW_TO_TRAIN = (
    "Train weights on your own series with hyperspy_edxtomo.train_end_to_end(maps, out='t.pt') "
    "(it runs two_step first), then reconstruct(method='end_to_end', weights='t.pt')."
)


class EndToEnd(ReconstructionAlgorithm):
    """T(FBP(Q^D y)): a residual 3D U-Net, elements as channels."""

    name = "end_to_end"
    summary = "Paper's end-to-end 3D U-Net on FBP(Q^D y); needs weights from train_end_to_end"

    weights = Str("", desc="path of the weights file written by train_end_to_end (required)")
    denoiser = Str("stored", desc="Q^D: 'stored' (the one saved with the weights), 'none', or an installed denoiser")
    denoiser_parameters = Dict(desc="parameters of the denoiser when it is not 'stored'")
    filter = Enum(*FILTERS, desc="FBP filter of the network's input (use the one it was trained with)")
    constrain = Bool(True, desc="clip negative values to 0")

    # Q^D denoises the raw counts, the background is removed before the FBP the network was trained on;
    # the network was trained on two_step results (the FSC halves use the default method)
    accepts_background = learned = denoises = True

    def reconstruct_series(self, counts, context):
        t0 = time.perf_counter()
        elements, projector = list(context.elements), context.projector
        if not self.weights:
            raise InputError(f"end_to_end needs weights=: it applies a trained network. {HOW_TO_TRAIN}")
        check_tilt_count(projector, self.name)
        model = EndToEndModel.load(self.weights)
        model.check_compatible(elements, context.pixel_size_nm)
        stored = None
        name = self.denoiser
        if name == "stored":
            stored = model.get_denoiser()
            if stored is None:
                raise InputError(
                    f"The weights {self.weights} hold no Q^D denoiser: pass denoiser='deep' (trains one on this "
                    "series), another installed denoiser, or 'none'."
                )
            name = "deep"
        y_d, _, qd_used = denoise_stage(counts, elements, projector, name, self.denoiser_parameters, context.seed,
                                        context.show_progressbar, model=stored)
        y_d = net_of_background(y_d, context.background)
        fbp = get_algorithm("fbp").create(filter=self.filter)
        x, _ = reconstruct_elements(fbp, y_d, dataclasses.replace(context, show_progressbar=False), "FBP of Q^D y")
        t = time.perf_counter()
        volume = model.predict(x, elements, cuda=projector.cuda, constrain=self.constrain)
        timings = {"network_seconds": round(time.perf_counter() - t, 3), "seconds": round(time.perf_counter() - t0, 3)}
        intermediates = {"denoised": ("maps", y_d, projector.tilts_deg), "fbp_denoised": ("volume", x)}
        used = {**self.parameter_values(), "denoiser_used": qd_used, "network": repr(model), "timings": timings}
        return ReconstructionResult(volume, [used] * len(elements), intermediates)


@hookimpl
def edxtomo_reconstruction_algorithms():
    return [EndToEnd]
