"""``method="auto"``: the denoiser chosen on the maps themselves.

Counts (and counts times a scale) go to the count-splitting U-Net
(``"deep"``). Count splitting cannot train on maps that are not counts
(background-subtracted, quantified); two denoisers that never see the value
they predict can: the U-Net trained with a blind spot (``"deep"`` with
``training="blind_spot"``) and the Gaussian whose width a blind spot chose
(``"gaussian"`` with ``sigma="auto"``). Both predict the same held-out pixels
(on which the network never trained) from their neighbours, and are scored by
the Poisson deviance of those pixels' values: for noise independent from
pixel to pixel its expectation is the error against the truth plus a
constant (a Bregman divergence), so the lower one predicts the truth better.
Per element, the network is kept only where its gain exceeds two standard
errors of the paired per-pixel differences; otherwise the Gaussian, the
cheaper and simpler choice. Scores, gain and reason go into the history.
"""

import numpy as np
from traits.api import Dict, Int

from hyperspy_edxtomo.base.counts import in_count_units, poisson_deviance
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.validation import paired_gain
from hyperspy_edxtomo.denoising.methods.deep import DeepCountSplit
from hyperspy_edxtomo.denoising.methods.gaussian import blind_spot_smooth, choose_sigma, smooth
from hyperspy_edxtomo.plugins.contract import Denoiser, DenoisingResult
from hyperspy_edxtomo.plugins.hookspecs import hookimpl

#: standard errors by which the network must beat the Gaussian on the held-out pixels
MIN_GAIN_SE = 2.0


def pixel_deviance(values, expected):
    """Poisson deviance of every value under its expectation (no sum)."""
    return poisson_deviance(values, expected, axis=())


def compare_on_pixels(values, first, second):
    """Paired comparison of two predictions of the same values, per pixel: ``(mean deviance of first, of
    second, mean gain of second over first, its standard error)``."""
    a, b = pixel_deviance(values, first), pixel_deviance(values, second)
    gain, se = paired_gain(a, b)
    return float(a.mean()), float(b.mean()), gain / a.size, se / a.size


class Auto(Denoiser):
    """The count-splitting U-Net on counts; on other maps the blind-spot U-Net or a Gaussian, whichever
    predicts held-out pixels better."""

    name = "auto"
    summary = ("Chosen on the maps: count-split U-Net on counts; otherwise blind-spot U-Net or Gaussian, "
               "whichever predicts held-out pixels better")
    seeded = True
    #: the minimum of counts is checked as for "deep"
    splits_counts = True
    deep_parameters = Dict(desc="settings of the U-Net (as for method='deep', e.g. {'steps': 400})")
    seed = Int(0, desc="seed of the U-Net's initialisation, splits, held-out pixels and patches")

    def denoise_counts(self, counts, context):
        _, _, kinds = in_count_units(counts)
        training = "auto" if all(k == "counts" for k in kinds) else "blind_spot"
        settings = {**self.deep_parameters, "training": training, "seed": context.seed}
        result = DeepCountSplit.create(**settings).denoise_counts(counts, context)
        if training == "auto":
            return DenoisingResult(result.counts, {"chosen": "deep", **result.chosen}, result.model)
        elements, model, cuda = list(context.elements), result.model, settings.get("cuda")
        hidden = model.held_out_pixels
        if hidden is None:
            raise InputError("method='auto' compares its denoisers on held-out pixels: leave the U-Net's "
                             "validation_fraction above 0.")
        net_held = model.blind_spot_predict(counts, hidden, cuda=cuda)
        net_out = result.counts
        out, record, kept = np.empty_like(counts), {}, False
        for e, el in enumerate(elements):
            sigma, _ = choose_sigma(counts[e : e + 1])
            gauss_held = blind_spot_smooth(counts[e : e + 1], sigma)[0]
            dev_g, dev_n, gain, se = compare_on_pixels(counts[e][hidden], gauss_held[hidden], net_held[e][hidden])
            use_net = gain > MIN_GAIN_SE * se
            kept |= use_net
            out[e] = net_out[e] if use_net else smooth(counts[e : e + 1], sigma)[0]
            record[el] = {
                "chosen": "deep (blind spot)" if use_net else "gaussian",
                "sigma": sigma,
                "held_out_deviance": {"deep": dev_n, "gaussian": dev_g},
                "gain": gain, "standard_error": se, "held_out_pixels": int(hidden.sum()),
                "reason": (f"the network's held-out deviance is lower by {gain / se:.1f} standard errors"
                           if use_net else
                           f"the network did not beat the Gaussian by {MIN_GAIN_SE:g} standard errors "
                           f"(gain {gain:.3g} +- {se:.3g})"),
            }
        chosen = {"chosen": "per element", "data_kinds": dict(zip(elements, kinds)),
                  "criterion": "Poisson deviance of held-out pixels predicted blind (paired, per element)",
                  "elements": record, "training": {k: result.chosen[k] for k in ("best_step", "steps_run", "device")}}
        return DenoisingResult(out, chosen, model if kept else None)


@hookimpl
def edxtomo_denoisers():
    return [Auto]
