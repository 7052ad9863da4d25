"""``maps.reconstruct(method=...)``: every element, slice batches through dask."""

import time

import numpy as np
from scipy import ndimage

from ._docstrings import SHOW_PROGRESSBAR_ARG
from .counts import DOSE_RATIO_WARN, EMPTY_VIEW_COUNTS, is_counts
from .errors import warn
from .metadata import append_history, get_history
from .plugin_manager import get_algorithm, reconstruction_algorithms
from .progress import compute
from .projector import Projector, resolve_cuda


def list_algorithms(verbose=False):
    """The installed reconstruction algorithms and their parameters.

    Parameters
    ----------
    verbose : bool
        If True, also print a readable listing.

    Returns
    -------
    dict
        ``{name: {"summary", "plugin", "parameters": {name: {"default", "description", "allowed"}}}}``

    Examples
    --------
    >>> import hyperspy_edxtomo as het
    >>> "sirt" in het.list_algorithms()
    True
    """
    out = {}
    for name, cls in reconstruction_algorithms().items():
        out[name] = {
            "summary": cls.summary,
            "plugin": cls.__module__,
            "parameters": cls.describe_parameters(),
        }
    if verbose:
        print(format_algorithms(out))
    return out


def format_algorithms(listing):
    lines = []
    for name, info in listing.items():
        lines.append(f"{name}: {info['summary']}  [{info['plugin']}]")
        for p, d in info["parameters"].items():
            lines.append(f"    {p} = {d['default']!r}  ({d['allowed']}): {d['description']}")
    return "\n".join(lines)


#: fewer views than this get a warning: a tomogram from 2-4 directions is mostly streaks
FEW_VIEWS = 5


def reconstruct(
    maps,
    method="sirt",
    n_z=None,
    axis_offset_px=0.0,
    rotation_deg=0.0,
    batch_size=None,
    cuda=None,
    show_progressbar=None,
    return_intermediates=False,
    **parameters,
):
    """Implementation of :meth:`ElementMapTiltSeries.reconstruct`."""
    from .progress import show_progress
    from .signals.volume import volume_from_array

    from .signals.element_maps import ElementMapTiltSeries

    if not isinstance(maps, ElementMapTiltSeries):
        raise TypeError(f"reconstruct needs an ElementMapTiltSeries, got {type(maps).__name__}")
    cls = get_algorithm(method)
    algorithm = cls.create(**parameters)
    counts = maps.to_numpy()
    if counts.ndim != 4:
        raise ValueError(f"Element maps must be shaped (element, tilt, y, x); got {counts.shape}")
    if not np.all(np.isfinite(counts)):
        raise ValueError("The element maps contain NaN or infinite values: reconstruction needs finite counts.")
    n_el, n_t, n_y, n_x = counts.shape
    tilts = maps.tilts
    if tilts.size != n_t:
        raise ValueError(f"{tilts.size} tilt angles for {n_t} views.")
    if n_t < 2:
        raise ValueError(f"Reconstruction needs at least 2 tilts, got {n_t}.")
    if n_t < FEW_VIEWS:
        warn(f"Only {n_t} views: a volume from so few directions is badly undersampled (streaks, objects "
             "stretched along the beam); read it with care.")
    if not np.isfinite(rotation_deg) or not np.isfinite(axis_offset_px):
        raise ValueError(f"rotation_deg and axis_offset_px must be finite, got {rotation_deg}, {axis_offset_px}")
    background = _background_of(maps, counts.shape)
    check_views(counts, tilts, maps.elements)
    if rotation_deg:
        counts = rotate_views(counts, rotation_deg)
        background = None if background is None else rotate_views(background, rotation_deg)
    cuda = resolve_cuda(cuda)
    projector = Projector(tilts, n_x=n_x, n_z=n_z or n_x, axis_offset_px=axis_offset_px, cuda=cuda)
    if batch_size is None:
        batch_size = _default_batch(projector)
    batch_size = int(min(max(1, batch_size), n_y))
    show = show_progress(show_progressbar)

    t0 = time.perf_counter()
    algorithm._intermediates = None
    from .signals.element_maps import _to_nm

    nm, nm_units = _to_nm(*maps.pixel_size)
    algorithm._pixel_size_nm = nm if nm_units == "nm" else None
    extra = {}
    if background is not None:
        if cls.accepts_background:
            extra["background"] = background
        else:
            # the algorithm knows no background term: it gets the maps minus the background
            counts = counts - background
    data, used = algorithm.reconstruct_series(
        counts, list(maps.elements), projector, batch_size=batch_size, show_progressbar=show, **extra
    )
    data = np.asarray(data, np.float32)
    expected = (n_el, projector.n_z, n_y, n_x)
    if data.shape != expected:
        raise RuntimeError(f"Algorithm {method!r} returned volumes of shape {data.shape}, expected {expected}.")
    scale, units = maps.pixel_size
    vol = volume_from_array(
        data,
        maps.elements,
        voxel_size_nm=scale if units == "nm" else None,
        history=get_history(maps),
        title=f"{method} reconstruction of {maps.metadata.General.title}",
    )
    for name in ("Sample.xray_lines", "Acquisition_instrument"):
        if maps.metadata.has_item(name):
            vol.metadata.set_item(name, maps.metadata.get_item(name))
    params = {
        "parameters": used[0] if all(u == used[0] for u in used) else dict(zip(maps.elements, used)),
        "tilts_deg": tilts,
        "n_z": projector.n_z,
        "axis_offset_px": axis_offset_px,
        "rotation_deg": rotation_deg,
        "batch_size": batch_size,
        "background": ("none" if background is None else
                       "modelled: y ~ Poisson(A x + b)" if cls.accepts_background else "subtracted before reconstruction"),
        "cuda": cuda,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    append_history(vol, "reconstruction", method, params)
    if maps._lazy:
        vol = vol.as_lazy()
    if return_intermediates:
        return vol, _intermediate_signals(algorithm.intermediates, maps, vol)
    return vol


def reconstruct_elements(algorithm, counts, elements, projector, batch_size=None, show_progressbar=False, label=None,
                         background=None):
    """Reconstruct every element of ``counts`` (element, tilt, y, x) slice by slice.

    What :meth:`ReconstructionAlgorithm.reconstruct_series` does by default:
    per element, :meth:`~ReconstructionAlgorithm.prepare` on all its
    sinograms, then batches of slices through dask (``map_overlap`` when the
    algorithm couples neighbouring slices). ``background`` (shaped like
    ``counts``) goes to algorithms that model it (``accepts_background``);
    the others get ``counts - background``.

    Returns
    -------
    volumes : ndarray
        ``(element, z, y, x)`` float32.
    used : list of dict
        Per element, the parameters used (with what ``prepare`` chose).
    """
    import dask.array as da

    n_el, n_t, n_y, n_x = counts.shape
    if batch_size is None:
        batch_size = _default_batch(projector)
    batch_size = int(min(max(1, batch_size), n_y))
    label = label or algorithm.name
    if background is not None and not algorithm.accepts_background:
        counts, background = np.asarray(counts, np.float32) - background, None
    volumes, used = [], []
    for e, element in enumerate(elements):
        alg = algorithm.clone_traits()
        # slices are rows: (y, tilt, x)
        sino = np.ascontiguousarray(counts[e].transpose(1, 0, 2), dtype=np.float32)
        if background is None:
            alg.prepare(sino, projector, show_progressbar=show_progressbar)
            n_views = n_t
        else:
            b = np.ascontiguousarray(background[e].transpose(1, 0, 2), dtype=np.float32)
            alg.prepare(sino, projector, show_progressbar=show_progressbar, background=b)
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


def _intermediate_signals(intermediates, maps, vol):
    """Wrap an algorithm's intermediate arrays as signals of this project.

    ``intermediates`` maps a name to ``("maps", array (element, tilt, y, x), tilts)``,
    ``("volume", array (element, z, y, x))``, ``("table", dict)`` or
    ``("object", anything)`` (e.g. a trained denoiser); the last two pass through as they are.
    """
    from .signals.element_maps import element_maps_from_array
    from .signals.volume import volume_from_array

    scale, units = maps.pixel_size
    nm = scale if units == "nm" else None
    out = {}
    for name, item in (intermediates or {}).items():
        kind = item[0]
        if kind == "maps":
            s = element_maps_from_array(item[1], item[2], maps.elements, pixel_size_nm=nm, title=name)
        elif kind == "volume":
            s = volume_from_array(item[1], maps.elements, voxel_size_nm=nm, history=get_history(vol), title=name)
        else:
            s = item[1]
        out[name] = s
    return out


#: the background estimate is smoothed with a Gaussian of this width (pixels) before use
BACKGROUND_SIGMA_PX = 2.0


def _background_of(maps, shape):
    """The maps' expected background counts (``metadata.Tomography.background``) as float32, or None."""
    b = getattr(maps, "background", None)
    if b is None:
        b = maps.metadata.get_item("Tomography.background", None)
        if b is not None and hasattr(b, "data"):
            b = b.data
    if b is None:
        return None
    b = np.asarray(b.compute() if hasattr(b, "compute") else b, np.float32)
    if b.shape != tuple(shape):
        raise ValueError(f"The maps' background (metadata.Tomography.background) is shaped {b.shape}, the maps "
                         f"{tuple(shape)}: they must match.")
    if not np.all(np.isfinite(b)) or np.any(b < 0):
        raise ValueError("The maps' background (metadata.Tomography.background) must be finite and >= 0.")
    if not np.any(b):
        return None
    # b is estimated pixel by pixel from side windows, as noisy as counts; the continuum itself varies
    # slowly (support film, mass thickness): a mild smoothing keeps its shape and drops most of the
    # noise, which the model would otherwise take for signal
    return ndimage.gaussian_filter(b, (0, 0, BACKGROUND_SIGMA_PX, BACKGROUND_SIGMA_PX), mode="nearest")


def check_views(maps_array, tilts, elements):
    """Refuse views that hold nothing at all; warn about views of one element
    that are empty or whose totals differ from the others' by more than
    :data:`DOSE_RATIO_WARN` (a view acquired at another dose or exposure, or
    a failed frame): reconstruction weighs every view alike."""
    totals = np.abs(np.asarray(maps_array, np.float64)).sum(axis=(2, 3))  # (element, tilt)
    empty = [i for i in range(totals.shape[1]) if not np.any(totals[:, i])]
    if empty:
        where = [float(tilts[i]) for i in empty]
        full = totals.sum(axis=0)
        median = float(np.median(full[full > 0])) if np.any(full > 0) else 0.0
        if median and median < EMPTY_VIEW_COUNTS and is_counts(maps_array):
            # a few counts per view: an empty one is Poisson chance (exp(-median)), a measurement of zero
            warn(f"View(s) at tilt(s) {where} deg hold no counts in any element; with {median:.3g} counts in the "
                 "median view that is chance, and they are used as measured zeros.")
        else:
            raise ValueError(f"View(s) at tilt(s) {where} deg hold no signal in any element: "
                             "remove them (maps.inav[...]) before reconstructing.")
    for e, element in enumerate(elements):
        t = totals[e]
        if not np.any(t):
            continue
        zero = [float(tilts[i]) for i in np.flatnonzero(t == 0)]
        if zero:
            warn(f"Element {element}: the view(s) at {zero} deg are empty.")
        positive = t[t > 0]
        med = np.median(positive)
        odd = [float(tilts[i]) for i in range(t.size) if t[i] > 0 and max(t[i] / med, med / t[i]) > DOSE_RATIO_WARN]
        if odd:
            warn(
                f"Element {element}: the view(s) at {odd} deg hold more than {DOSE_RATIO_WARN:g} times more or less "
                f"signal than the median view ({med:.4g}). Every view is weighed alike: check the acquisition (dose, "
                "dwell time, a failed frame) and remove or rescale such views.")


def rotate_views(counts, rotation_deg):
    """Turn every view so that a tilt axis at ``rotation_deg`` (counter-clockwise
    from the rows' direction) runs along the rows.

    Bilinear, same size, zero outside the field of view: counts inside it are
    kept up to interpolation, counts rotated out of it are lost.
    """
    from scipy.ndimage import rotate

    flat = counts.reshape(-1, *counts.shape[-2:]).astype(np.float32)
    out = np.stack([rotate(v, -rotation_deg, reshape=False, order=1, mode="constant", cval=0.0) for v in flat])
    return np.clip(out, 0, None).reshape(counts.shape)


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


def _default_batch(projector):
    # ~256 MB of float32 per batch for the slices and a few work copies
    per_slice = 4 * (projector.n_z * projector.n_x * 4 + projector.n_tilts * projector.n_x * 2)
    return int(max(1, min(256, (256 * 2**20) // per_slice)))


reconstruct.__doc__ = f"""Reconstruct every element of an element-map tilt series.

    Parameters
    ----------
    method : str
        A reconstruction plugin: ``hyperspy_edxtomo.list_algorithms()`` lists
        the installed ones and their parameters.
    n_z : int, optional
        Depth of the volume (beam direction at 0 deg); default the map width.
    axis_offset_px : float
        Tilt-axis position relative to the centre column of the maps, pixels.
    rotation_deg : float
        In-plane angle of the tilt axis, degrees counter-clockwise from the
        rows' direction (image vertical); the views are turned to bring it
        vertical (bilinear, zero outside the field of view) before the
        slice-by-slice reconstruction.
    batch_size : int, optional
        Slices reconstructed together; bounds the memory. Each batch is a dask
        task, so a ``dask.distributed`` client spreads them over its workers.
    cuda : None or bool
        None: use CUDA when present.
    {SHOW_PROGRESSBAR_ARG}
    return_intermediates : bool
        Also return a dict of the algorithm's intermediate results as
        signals (e.g. ``two_step``: the denoised maps, the MBIR volume, the
        re-projections and their enhanced versions); empty for one-stage
        algorithms.
    **parameters
        The algorithm's parameters (validated; errors list what is allowed).

    Returns
    -------
    ElementVolume or LazyElementVolume
        Shaped (element, z, y, x) in nm, the method and the parameters used
        in ``history``. Lazy maps give a lazy volume, as HyperSpy operations do, but it is
        computed during this call: every slice needs all its views at once
        and the solvers iterate over them, and the volume (elements x n_z x
        n_y x n_x floats) is far smaller than the spectra it came from.
    """
