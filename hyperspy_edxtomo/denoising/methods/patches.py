"""Patch decomposition denoising through HyperSpy's ``decomposition`` (PCA, NMF).

Element maps hold no spectral axis to decompose, so the signals are image
patches: every ``patch_size`` x ``patch_size`` patch (all elements together,
taken every ``stride`` pixels at every tilt) is one navigation position, its
pixels the signal. HyperSpy's decomposition with Poisson normalisation
(``normalize_poissonian_noise=True``) keeps ``components`` components; the
model patches are averaged back where they overlap.
"""

import numpy as np
from traits.api import Range

from hyperspy_edxtomo.plugins.contract import Denoiser, DenoisingResult


def _starts(n, patch, stride):
    starts = list(range(0, n - patch + 1, stride))
    if starts[-1] != n - patch:
        starts.append(n - patch)
    return starts


def extract(counts, patch, stride):
    e, t, ny, nx = counts.shape
    ys, xs = _starts(ny, patch, stride), _starts(nx, patch, stride)
    rows = [counts[:, ti, y : y + patch, x : x + patch].ravel() for ti in range(t) for y in ys for x in xs]
    return np.asarray(rows), ys, xs


def assemble(rows, shape, patch, ys, xs):
    e, t, ny, nx = shape
    out = np.zeros(shape)
    weight = np.zeros((ny, nx))
    i = 0
    for ti in range(t):
        for y in ys:
            for x in xs:
                out[:, ti, y : y + patch, x : x + patch] += rows[i].reshape(e, patch, patch)
                i += 1
    for y in ys:
        for x in xs:
            weight[y : y + patch, x : x + patch] += 1
    return out / weight[None, None]


class PatchDecomposition(Denoiser):
    """Base of the PCA and NMF plugins."""

    assumes_counts = True
    algorithm = None  # HyperSpy decomposition algorithm
    patch_size = Range(2, 64, 8, desc="width of the square patches in pixels")
    stride = Range(1, 64, 2, desc="step between patches in pixels")
    components = Range(1, 10000, 6, desc="number of components kept")

    def denoise_counts(self, counts, context):
        import hyperspy.api as hs

        patch = min(self.patch_size, counts.shape[2], counts.shape[3])
        rows, ys, xs = extract(counts, patch, self.stride)
        n = min(self.components, *rows.shape)
        s = hs.signals.Signal1D(rows)
        # HyperSpy's Poisson normalisation divides by sqrt of the mean row/column
        # sums: a pixel or patch without any count would divide by zero
        keep_nav = rows.sum(axis=1) > 0
        keep_sig = rows.sum(axis=0) > 0
        if keep_nav.sum() < 2 or keep_sig.sum() < 2:
            return DenoisingResult(counts.copy())
        s.decomposition(
            normalize_poissonian_noise=True,
            algorithm=self.algorithm,
            output_dimension=n,
            navigation_mask=~keep_nav,
            signal_mask=~keep_sig,
            print_info=False,
            **self._decomposition_options(),
        )
        model = np.asarray(s.get_decomposition_model(n).data, np.float64)
        model = np.nan_to_num(model, nan=0.0, posinf=0.0, neginf=0.0)
        model[~keep_nav] = 0.0
        model[:, ~keep_sig] = 0.0
        return DenoisingResult(np.clip(assemble(model, counts.shape, patch, ys, xs), 0, None))

    def _decomposition_options(self):
        # options of the decomposition a subclass adds (NMF: its seed)
        return {}
