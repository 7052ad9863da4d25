"""Self-supervised deep denoising (``maps.denoise_deep``): count splitting,
frame splitting or blind spot.

See :mod:`hyperspy_edxtomo.denoising.count_split_net` for the method.
"""

import numpy as np
from traits.api import Any, Bool, Enum, Int, Range, Union

from hyperspy_edxtomo.base.counts import check_counts, in_count_units
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.denoising.count_split_net import DEFAULT_CONFIG as D
from hyperspy_edxtomo.denoising.count_split_net import CountSplitDenoiserModel
from hyperspy_edxtomo.plugins.contract import Denoiser, DenoisingResult
from hyperspy_edxtomo.plugins.hookspecs import hookimpl


def frames_array(frames, elements, shape):
    """``frames`` as an int64 array (frame, element, tilt, y, x) in the order
    of ``elements``, checked against the maps' ``shape`` (element, tilt, y, x).

    Parameters
    ----------
    frames : array-like, HyperSpy signal or sequence of ElementMapTiltSeries
        An array (or a signal whose data is) shaped (frame, element, tilt, y,
        x) in the maps' element order, or one element-map tilt series per
        frame (elements matched by name).
    elements : list of str
        The elements of the maps.
    shape : tuple
        The shape of the maps' counts.

    Returns
    -------
    numpy.ndarray
    """
    if isinstance(frames, (list, tuple)) and frames and hasattr(frames[0], "elements"):
        stack = []
        for i, f in enumerate(frames):
            if sorted(f.elements) != sorted(elements):
                raise InputError(f"Frame {i} holds elements {list(f.elements)}, the maps hold {list(elements)}.")
            data = np.asarray(f.data)
            stack.append(data[[list(f.elements).index(e) for e in elements]])
        arr = np.stack(stack)
    else:
        arr = np.asarray(getattr(frames, "data", frames))
    if arr.ndim != 5 or arr.shape[1:] != tuple(shape):
        raise InputError(
            f"frames must be shaped (frame, element, tilt, y, x) = (n, {', '.join(map(str, shape))}), "
            f"got {arr.shape}."
        )
    # frame splitting sums raw counts of frames: they must be counts
    return check_counts(arr, "frames", axes="frame, element, tilt, y, x").astype(np.int64)


class DeepCountSplit(Denoiser):
    """A 2D U-Net (elements as channels, plus their sum) trained on the maps
    themselves by binomial count splitting (or frame splitting, or a blind
    spot), Poisson likelihood loss, early stopping on held-out counts."""

    name = "deep"
    summary = "U-Net trained on the data by Poisson count splitting (self-supervised)"
    seeded = True

    training = Enum(
        "auto",
        "count_split",
        "frame_split",
        "blind_spot",
        desc="how training pairs are made; auto: frame_split when frames are given, count_split on counts "
             "(and on counts times a scale, e.g. normalised maps), blind_spot on maps that are not counts",
    )
    frames = Any(
        None,
        desc="repeated frames (frame, element, tilt, y, x) that sum to the maps, or one maps object per frame",
    )
    levels = Range(1, 6, D["levels"], desc="resolution levels of the U-Net")
    channels = Range(2, 256, D["channels"], desc="feature channels at the top level (doubled per level)")
    steps = Range(1, 1_000_000, D["steps"], desc="maximum number of training steps")
    batch_size = Range(1, 1024, D["batch_size"], desc="patches per training step")
    patch_size = Range(4, 4096, D["patch_size"], desc="width of the square training patches in pixels")
    learning_rate = Range(0.0, 1.0, D["learning_rate"], exclude_low=True, desc="Adam learning rate (cosine decay)")
    split_fraction = Range(
        0.05, 0.95, D["split_fraction"], desc="probability that a count (or a frame) goes to the network input"
    )
    validation_fraction = Range(
        0.0, 0.5, D["validation_fraction"], desc="fraction of the counts held out for early stopping (0: none)"
    )
    eval_every = Range(1, 1_000_000, D["eval_every"], desc="training steps between held-out evaluations")
    patience = Range(1, 10_000, D["patience"], desc="evaluations without improvement before stopping")
    joint = Bool(D["joint"], desc="add the all-element sum as input and predict a total times element fractions")
    blind_spot_fraction = Range(
        0.001, 0.5, D["blind_spot_fraction"], desc="fraction of pixels hidden per step (training='blind_spot')"
    )
    thinned_inference = Range(
        0, 1000, D["thinned_inference"], desc="0: full counts in at inference; n: average over n thinned inputs"
    )
    tta = Bool(D["tta"], desc="average the 8 flips/rotations at inference")
    seed = Int(D["seed"], desc="seed of the initialisation, splits, patches and augmentation")
    cuda = Union(None, Bool, default_value=None, desc="None: CUDA when available; True/False: force")
    #: a trained CountSplitDenoiserModel to apply, training skipped (``denoise_deep(model=...)``); not a parameter
    model = Any(parameter=False)

    @property
    def assumes_counts(self):
        # a split chosen by name on maps that are not counts warns; "auto" and the blind spot fit any maps
        return self.training in ("count_split", "frame_split")

    @property
    def splits_counts(self):
        return self.training != "blind_spot"

    def _training(self, counts_kinds=("counts",)):
        if self.training == "auto":
            if self.frames is not None:
                return "frame_split"
            return "count_split" if all(k == "counts" for k in counts_kinds) else "blind_spot"
        if self.training == "frame_split" and self.frames is None:
            raise InputError(
                "training='frame_split' needs the repeated frames: denoise_deep(frames=...) with an array "
                "(frame, element, tilt, y, x) that sums to the maps, or one maps object per frame."
            )
        return self.training

    def _config(self, counts_kinds=("counts",)):
        cfg = {k: getattr(self, k) for k in D if k != "training"}
        cfg["training"] = self._training(counts_kinds)
        return cfg

    def denoise_counts(self, counts, context):
        elements, model = list(context.elements), self.model
        if model is not None:
            # a pretrained model: its own settings are what ran
            chosen = {**model.config, "cuda": self.cuda, "pretrained": True}
            return DenoisingResult(model.predict(counts, elements=elements, cuda=self.cuda), chosen=chosen,
                                   model=model)
        frames = None
        if self.frames is not None:
            frames = frames_array(self.frames, elements, counts.shape)
            if not np.array_equal(frames.sum(axis=0), np.round(counts)):
                raise InputError(
                    "The frames do not sum to the maps: denoise the sum of the frames "
                    "(frames summed over their first axis), or pass the frames of these maps."
                )
        units, kinds = np.ones(len(elements)), ["counts"] * len(elements)
        if self.training == "auto" and frames is None:
            # counts in disguise (normalised maps) are split as the counts they are; other maps
            # (background-subtracted, quantified) train with the blind spot, which needs no integers
            in_counts, in_units, kinds = in_count_units(counts)
            if all(k == "counts" for k in kinds):
                counts, units = in_counts.astype(np.float64), in_units
        model = CountSplitDenoiserModel(elements, **self._config(kinds))
        model.fit(counts, show_progressbar=context.show_progressbar, cuda=self.cuda, frames=frames)
        log = model.training_log
        # the history records how many frames were used, not the frames themselves
        chosen = {
            "training": log["training"],
            "data_kinds": dict(zip(elements, kinds)),
            "best_step": log["best_step"],
            "steps_run": log["steps_run"],
            "device": log["device"],
            "frames": None if frames is None else int(frames.shape[0]),
        }
        denoised = model.predict(counts, elements=elements, cuda=self.cuda) * units[:, None, None, None]
        return DenoisingResult(denoised, chosen=chosen, model=model)

    def parameter_values(self):
        values = super().parameter_values()
        # the frames themselves are data, not a setting to record
        values["frames"] = None
        return values


@hookimpl
def edxtomo_denoisers():
    return [DeepCountSplit]
