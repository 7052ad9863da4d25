"""Self-supervised deep denoising by Poisson count splitting (``maps.denoise_deep``).

See :mod:`hyperspy_edxtomo.denoising_net` for the method.
"""

from traits.api import Any, Bool, Enum, Int, Range, Union

from hyperspy_edxtomo.denoisers import Denoiser
from hyperspy_edxtomo.denoising_net import DEFAULT_CONFIG as D
from hyperspy_edxtomo.denoising_net import CountSplitDenoiserModel
from hyperspy_edxtomo.hookspecs import hookimpl


class DeepCountSplit(Denoiser):
    """A 2D U-Net (elements as channels) trained on the maps themselves by
    binomial count splitting, Poisson likelihood loss, early stopping on
    held-out counts."""

    name = "deep"
    summary = "U-Net trained on the data by Poisson count splitting (self-supervised)"
    assumes_counts = True
    splits_counts = True

    levels = Range(1, 6, D["levels"], desc="resolution levels of the U-Net")
    channels = Range(2, 256, D["channels"], desc="feature channels at the top level (doubled per level)")
    steps = Range(1, 1_000_000, D["steps"], desc="maximum number of training steps")
    batch_size = Range(1, 1024, D["batch_size"], desc="patches per training step")
    patch_size = Range(4, 4096, D["patch_size"], desc="width of the square training patches in pixels")
    learning_rate = Range(0.0, 1.0, D["learning_rate"], exclude_low=True, desc="Adam learning rate (cosine decay)")
    split_fraction = Range(0.05, 0.95, D["split_fraction"], desc="probability that a count goes to the network input")
    validation_fraction = Range(
        0.0, 0.5, D["validation_fraction"], desc="fraction of the counts held out for early stopping (0: none)"
    )
    eval_every = Range(1, 1_000_000, D["eval_every"], desc="training steps between held-out evaluations")
    patience = Range(1, 10_000, D["patience"], desc="evaluations without improvement before stopping")
    tta = Bool(D["tta"], desc="average the 8 flips/rotations at inference")
    seed = Int(D["seed"], desc="seed of the initialisation, splits, patches and augmentation")
    cuda = Union(None, Bool, default_value=None, desc="None: CUDA when available; True/False: force")
    #: a trained model to apply (training skipped), set by denoise_deep(model=...)
    _model = Any()

    def _config(self):
        return {k: getattr(self, k) for k in D}

    def denoise_counts(self, counts, elements, show_progressbar=False):
        model = self._model
        if model is None:
            model = CountSplitDenoiserModel(elements, **self._config())
            model.fit(counts, show_progressbar=show_progressbar, cuda=self.cuda)
            self._model = model
            log = model.training_log
            self._chosen = {"best_step": log["best_step"], "steps_run": log["steps_run"], "device": log["device"]}
        return model.predict(counts, elements=elements, cuda=self.cuda)

    def parameter_values(self):
        if self._model is not None and self._chosen is None:
            # a pretrained model: its own settings are what ran
            return {**self._model.config, "cuda": self.cuda, "pretrained": True}
        return super().parameter_values()


@hookimpl
def edxtomo_denoisers():
    return [DeepCountSplit]
