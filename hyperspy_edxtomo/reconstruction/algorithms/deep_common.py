"""What the deep reconstruction plugins (two_step, end_to_end) share."""

import numpy as np

from hyperspy_edxtomo.denoising.api import apply_denoiser
from hyperspy_edxtomo.plugins.manager import get_denoiser
from hyperspy_edxtomo.signals.element_maps import element_maps_from_array

#: fewest views a deep reconstruction accepts: the networks learn from the views
MIN_TILTS = 3


def check_tilt_count(projector, method):
    if projector.n_tilts < MIN_TILTS:
        raise ValueError(
            f"{method} needs at least {MIN_TILTS} tilts, got {projector.n_tilts}: its networks learn from the "
            "measured views. Use 'fbp' or 'sirt' for so few views."
        )


def denoise_stage(counts, elements, projector, name, parameters, seed, show_progressbar, model=None):
    """Q^D: ``(denoised counts, trained model or None, parameters used)``.

    ``name`` is an installed denoiser or ``"none"``; ``model`` a trained
    ``CountSplitDenoiserModel`` applied by the ``deep`` denoiser without training.
    """
    if name == "none":
        return np.asarray(counts, np.float32), None, {"method": "none"}
    cls = get_denoiser(name)
    params = dict(parameters)
    if cls.seeded:
        params.setdefault("seed", seed)
    den = cls.create(**params)
    if model is not None:
        model.check_elements(elements)
        den.model = model
    maps = element_maps_from_array(np.asarray(counts), projector.tilts_deg, elements)
    out, result = apply_denoiser(maps, den, show_progressbar=show_progressbar, seed=seed)
    return np.asarray(out.data, np.float32), result.model, {"method": name, **den.parameter_values(), **result.chosen}
