"""Running a slice-wise reconstruction algorithm over batches of slices.

What :meth:`ReconstructionAlgorithm.reconstruct_series
<hyperspy_edxtomo.plugins.contract.ReconstructionAlgorithm.reconstruct_series>`
does by default: per element, ``prepare`` on every sinogram, then batches of
slices as dask tasks (``map_overlap`` when the algorithm couples neighbouring
slices), so that a ``dask.distributed`` client spreads them over its workers.
"""

import inspect

import numpy as np

from hyperspy_edxtomo.base.errors import InputTypeError
from hyperspy_edxtomo.base.progress import compute

__all__ = ["reconstruct_elements", "batch_slices", "default_batch", "check_prepare"]


def reconstruct_elements(algorithm, counts, context, label=None, background=None):
    """Reconstruct every element of ``counts`` (element, tilt, y, x) slice by slice.

    What :meth:`ReconstructionAlgorithm.reconstruct_series` does by default:
    per element, :meth:`~ReconstructionAlgorithm.prepare` on all its
    sinograms, then batches of slices through dask (``map_overlap`` when the
    algorithm couples neighbouring slices). ``background`` (shaped like
    ``counts``) goes to algorithms that model it (``accepts_background``);
    the others get ``counts - background``.

    Parameters
    ----------
    algorithm : ReconstructionAlgorithm
    counts : ndarray
        ``(element, tilt, y, x)``, one element per entry of ``context.elements``.
    context : Context
        Its ``elements``, ``projector``, ``batch_size`` and
        ``show_progressbar`` are used, and it is handed to ``prepare``. A
        whole-series method runs a stage with another geometry or quietly
        with ``dataclasses.replace(context, ...)``.
    label : str, optional
        The progress bars' name (default: the algorithm's).
    background : ndarray, optional
        Expected background counts, shaped like ``counts``.

    Returns
    -------
    volumes : ndarray
        ``(element, z, y, x)`` float32.
    used : list of dict
        Per element, the parameters used (with what ``prepare`` chose).
    """
    import dask.array as da

    check_prepare(algorithm)
    n_el, n_t, n_y, n_x = counts.shape
    elements, projector, show_progressbar = context.elements, context.projector, context.show_progressbar
    if len(elements) != n_el:
        raise ValueError(f"{n_el} elements of counts for the context's {len(elements)} ({list(elements)})")
    batch_size = batch_slices(context, n_y)
    label = label or algorithm.name
    if background is not None and not algorithm.accepts_background:
        counts, background = np.asarray(counts, np.float32) - background, None
    volumes, used = [], []
    for e, element in enumerate(elements):
        alg = algorithm.clone_traits()
        # slices are rows: (y, tilt, x)
        sino = np.ascontiguousarray(counts[e].transpose(1, 0, 2), dtype=np.float32)
        if background is None:
            alg.prepare(sino, context)
            n_views = n_t
        else:
            b = np.ascontiguousarray(background[e].transpose(1, 0, 2), dtype=np.float32)
            alg.prepare(sino, context, background=b)
            # the background travels with its slices: views then background views along the tilt axis
            sino, n_views = np.concatenate([sino, b], axis=1), 2 * n_t
        used.append(alg.parameter_values())
        dsino = da.from_array(sino, chunks=(batch_size, n_views, n_x))
        kwargs = dict(dtype=np.float32, chunks=(batch_size, projector.n_z, n_x), meta=np.empty((0, 0, 0), np.float32))
        if alg.slice_halo and n_y > batch_size:
            halo = min(alg.slice_halo, batch_size)
            vol = dsino.map_overlap(
                _run_batch, depth={0: halo, 1: 0, 2: 0}, boundary="none", algorithm=alg, projector=projector,
                trim=True, **kwargs,
            )
        else:
            vol = dsino.map_blocks(_run_batch, algorithm=alg, projector=projector, **kwargs)
        # slices (y, z, x) -> (z, y, x)
        volumes.append(_compute(vol, show_progressbar, f"{label} {element}").transpose(1, 0, 2))
    return np.stack(volumes), used


def check_prepare(algorithm):
    """A TypeError naming the plugin when its ``prepare`` has the earlier signature
    ``prepare(self, sinograms, projector, show_progressbar=False, background=None)``: it would take the
    context for the projector and fail far from here, or run without what it meant to use."""
    params = inspect.signature(type(algorithm).prepare).parameters
    if "projector" in params or "show_progressbar" in params:
        cls = type(algorithm)
        raise InputTypeError(
            f"The reconstruction algorithm {cls.name!r} ({cls.__module__}.{cls.__qualname__}) defines "
            f"prepare{inspect.signature(cls.prepare)}, the earlier contract. Its signature is now "
            "prepare(self, sinograms, context, background=None): the projector is context.projector and "
            "the progress setting context.show_progressbar (docs: plugins). Update the plugin's package."
        )


def _run_batch(block, algorithm, projector):
    if block.shape[0] == 0:
        return np.zeros((0, projector.n_z, projector.n_x), np.float32)
    block = np.asarray(block, np.float32)
    n_t = projector.n_tilts
    if block.shape[1] == 2 * n_t:  # views, then their background
        out = algorithm.reconstruct_slices(block[:, :n_t], projector, background=block[:, n_t:])
    else:
        out = algorithm.reconstruct_slices(block, projector)
    return np.asarray(out, np.float32)


def _compute(darr, show, label):
    # locally, one batch at a time: each already uses every core (torch,
    # numba, BLAS), and two threaded batches would fight over them; on a
    # distributed cluster the batches go to its workers
    return compute(darr, desc=f"Reconstructing ({label})", show=show, scheduler="synchronous")


def batch_slices(context, n_slices):
    """How many slices one batch holds: ``context.batch_size``, or :func:`default_batch`, at most all."""
    batch_size = context.batch_size if context.batch_size is not None else default_batch(context.projector)
    return int(min(max(1, batch_size), n_slices))


def default_batch(projector):
    # ~256 MB of float32 per batch for the slices and a few work copies
    per_slice = 4 * (projector.n_z * projector.n_x * 4 + projector.n_tilts * projector.n_x * 2)
    return int(max(1, min(256, (256 * 2**20) // per_slice)))
