"""The fusion of one view: its element maps and its HAADF image, no tomography.

:func:`fuse_view` estimates a view's expected counts with the model of
``method="fused"`` (:mod:`~hyperspy_edxtomo.reconstruction.multichannel`)
where the projector is the identity: the Poisson likelihood of each element's
counts, the HAADF image as a fitted sum of the elements plus an offset, and a
coupled TV along the HAADF's edges; the strength, the guide and the HAADF
weight are chosen on held-out counts (count splitting), 0 included. It is the
2D check of the fusion on real frames (``benchmarks/bench_fusion.py``), not a
denoiser for users: on the real 0/1-count frames it predicts held-out counts
worse than ``denoise_deep`` (a pixel-level TV keeps isolated counts as
spikes, where a denoiser spreads them; table in the benchmarks page).
"""

import numpy as np
import scipy.sparse as sp
import torch
from scipy import ndimage

from hyperspy_edxtomo.reconstruction.haadf import guide_field
from hyperspy_edxtomo.reconstruction.joint_selection import JointData, choose_joint
from hyperspy_edxtomo.reconstruction.multichannel import element_scales
from hyperspy_edxtomo.reconstruction.projector import resolve_cuda

__all__ = ["ImageOperator", "fuse_view"]

#: the HAADF image is smoothed by this much (pixels) before its edges guide the TV: its own shot noise
#: would otherwise make edges everywhere
GUIDE_SMOOTHING_PX = 1.0


class ImageOperator:
    """The identity with a projector's interface: an image ``(n_z, n_x)`` is its own "sinogram" (``n_z``
    rows play the views), so the solvers of the tomography serve a single view."""

    def __init__(self, shape, cuda=None):
        self.n_z, self.n_x = (int(s) for s in shape)
        self.cuda = resolve_cuda(cuda)
        eye = sp.identity(self.n_z * self.n_x, dtype=np.float32, format="csr")
        self.matrix = (eye, eye)

    n_tilts = property(lambda self: self.n_z)
    slice_shape = property(lambda self: (self.n_z, self.n_x))
    device = property(lambda self: "cuda" if self.cuda else "cpu")

    def fp_cols(self, x):
        return x.clone() if torch.is_tensor(x) else np.array(x, np.float32)

    bp_cols = fp_cols


def fuse_view(counts, haadf, background=None, lam="auto", haadf_weight="auto", guide_strength="auto",
              iterations=200, elements=(), cuda=None, seed=0):
    """Expected counts of one view's element maps with its HAADF image.

    Parameters
    ----------
    counts : ndarray
        ``(element, y, x)`` counts.
    haadf : ndarray
        ``(y, x)``.
    background : ndarray or None
        Expected background counts, shaped like ``counts``.
    lam, haadf_weight, guide_strength : "auto" or float
        As for ``method="fused"``.

    Returns
    -------
    expected : ndarray
        ``(element, y, x)`` float32: ``x + b``, the expected counts.
    chosen : dict
        What was chosen and why (:func:`~hyperspy_edxtomo.reconstruction.joint_selection.choose_joint`).

    The image's rows play the views: the HAADF model fits one offset per
    row (a scan-line offset), not one per image.
    """
    counts = np.asarray(counts, np.float32)
    op = ImageOperator(counts.shape[1:], cuda)
    h = np.asarray(haadf, np.float32)
    dev = op.device
    ys = torch.from_numpy(counts.reshape(counts.shape[0], -1, 1)).to(dev)
    b = None if background is None else torch.from_numpy(
        np.asarray(background, np.float32).reshape(counts.shape[0], -1, 1)).to(dev)
    data = JointData(counts[:, None], op, ["poisson"] * counts.shape[0],
                     None if background is None else np.asarray(background)[:, None], h[None], None,
                     scales=element_scales(op, ys, b))

    def make_guide(model):
        return guide_field(ndimage.gaussian_filter(h, GUIDE_SMOOTHING_PX)[None])

    chosen = choose_joint(data, "count_split", lam=lam, haadf_weight=haadf_weight, guide_strength=guide_strength,
                          iterations=iterations, elements=elements, make_guide=make_guide, seed=seed)
    with torch.no_grad():
        x = data.solve(op, ys, chosen["lam"], iterations, b,
                       data.haadf_term(chosen["haadf_model"], chosen["haadf_weight"]), chosen["guide_strength"])
        mu = x if b is None else x + b
    return mu.cpu().numpy().reshape(counts.shape), chosen
