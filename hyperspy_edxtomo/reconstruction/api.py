"""``maps.reconstruct(method=...)``: every element, slice batches through dask."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from hyperspy_edxtomo.base.conventions import NODE, to_nm
from hyperspy_edxtomo.base.counts import (
    DOSE_RATIO_WARN,
    EMPTY_VIEW_COUNTS,
    check_counts,
    check_finite,
    is_counts,
)
from hyperspy_edxtomo.base.docstrings import SHOW_PROGRESSBAR_ARG
from hyperspy_edxtomo.base.errors import InputError, InputTypeError, warn
from hyperspy_edxtomo.base.private_api import is_lazy
from hyperspy_edxtomo.base.progress import show_progress
from hyperspy_edxtomo.base.provenance import append_history, get_history
from hyperspy_edxtomo.plugins.contract import Context, ReconstructionResult
from hyperspy_edxtomo.plugins.manager import get_algorithm, reconstruction_algorithms
from hyperspy_edxtomo.plugins.slices import default_batch
from hyperspy_edxtomo.reconstruction.haadf import check_haadf
from hyperspy_edxtomo.reconstruction.projector import Projector, resolve_cuda
from hyperspy_edxtomo.signals.element_maps import (
    ElementMapTiltSeries,
    element_maps_from_array,
)
from hyperspy_edxtomo.signals.methods import signal_method

if TYPE_CHECKING:
    from hyperspy.signals import Signal2D
from hyperspy_edxtomo.signals.volume import ElementVolume, volume_from_array

_logger = logging.getLogger(__name__)


def list_algorithms(verbose: bool = False) -> dict:
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


#: the method ``reconstruct``, the pipeline, ``edxtomo`` and the FSC use when none is named
DEFAULT_METHOD = "tv"

#: fewer views than this get a warning: a tomogram from 2-4 directions is mostly streaks
FEW_VIEWS = 5


@signal_method(ElementMapTiltSeries)
def reconstruct(
    maps: ElementMapTiltSeries,
    method: str = DEFAULT_METHOD,
    n_z: int | None = None,
    axis_offset_px: float = 0.0,
    rotation_deg: float = 0.0,
    batch_size: int | None = None,
    cuda: bool | None = None,
    show_progressbar: bool | None = None,
    return_intermediates: bool = False,
    haadf: Signal2D | np.ndarray | None = None,
    haadf_volume: Signal2D | np.ndarray | None = None,
    seed: int = 0,
    **parameters,
) -> ElementVolume | tuple[ElementVolume, dict]:
    """Reconstruct every element (the docstring is completed below, with the shared parameter text)."""
    if not isinstance(maps, ElementMapTiltSeries):
        raise InputTypeError(f"reconstruct needs an ElementMapTiltSeries, got {type(maps).__name__}")
    cls = get_algorithm(method)
    algorithm = cls.create(**parameters)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}.")
    counts = maps.to_numpy()
    if counts.ndim != 4:
        raise InputError(f"Element maps must be shaped (element, tilt, y, x); got {counts.shape}")
    counts = check_finite(counts, "element maps")
    n_el, n_t, n_y, n_x = counts.shape
    tilts = maps.tilts
    if tilts.size != n_t:
        raise InputError(f"{tilts.size} tilt angles for {n_t} views.")
    if n_t < 2:
        raise InputError(f"Reconstruction needs at least 2 tilts, got {n_t}.")
    if n_t < FEW_VIEWS:
        warn(f"Only {n_t} views: a volume from so few directions is badly undersampled (streaks, objects "
             "stretched along the beam); read it with care.")
    if not np.isfinite(rotation_deg) or not np.isfinite(axis_offset_px):
        raise InputError(f"rotation_deg and axis_offset_px must be finite, got {rotation_deg}, {axis_offset_px}")
    background = _background_of(maps, counts.shape)
    has_background = background is not None
    check_views(counts, tilts, maps.elements)
    haadf_views, haadf_mask = _haadf_of(maps, haadf, algorithm, counts.shape)
    guide_volume = _haadf_volume_of(haadf_volume, algorithm, (n_z or n_x, n_y, n_x))
    if rotation_deg:
        counts = rotate_views(counts, rotation_deg)
        background = None if background is None else rotate_views(background, rotation_deg)
        if haadf_views is not None:
            haadf_views = rotate_views(haadf_views, rotation_deg, clip=False)
            # a pixel partly from a saturated one is not trusted either; the corners turned in from outside are 0
            haadf_mask = rotate_views(np.ones(haadf_views.shape, np.float32) if haadf_mask is None
                                      else haadf_mask.astype(np.float32), rotation_deg) > 0.999
    cuda = resolve_cuda(cuda)
    projector = Projector(tilts, n_x=n_x, n_z=n_z or n_x, axis_offset_px=axis_offset_px, cuda=cuda)
    if batch_size is None:
        batch_size = default_batch(projector)
    # not yet limited to the slices: the coupled solvers divide it by the number of elements first (clamped
    # before, a series of 4 elements that fits one batch was solved in 4)
    batch_size = int(max(1, batch_size))
    show = show_progress(show_progressbar)

    t0 = time.perf_counter()
    nm, nm_units = to_nm(*maps.pixel_size)
    if background is not None and not cls.accepts_background:
        # the algorithm knows no background term: it gets the maps minus the background
        counts, background = counts - background, None
    context = Context(elements=tuple(maps.elements), tilts_deg=tilts, pixel_size_nm=nm if nm_units == "nm" else None,
                      seed=int(seed), show_progressbar=show, cuda=cuda, projector=projector, batch_size=batch_size,
                      background=background, haadf=haadf_views, haadf_mask=haadf_mask, haadf_volume=guide_volume)
    result = algorithm.reconstruct_series(counts, context)
    if not isinstance(result, ReconstructionResult):
        raise TypeError(f"Algorithm {method!r} returned {type(result).__name__}; reconstruct_series must return a "
                        "hyperspy_edxtomo.plugins.ReconstructionResult.")
    data, used = np.asarray(result.volumes, np.float32), list(result.parameters)
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
        "batch_size": min(batch_size, n_y),
        "seed": int(seed),
        "background": ("none" if not has_background else
                       "modelled: y ~ Poisson(A x + b)" if cls.accepts_background else "subtracted before reconstruction"),
        "cuda": cuda,
        "haadf": ("none" if haadf_views is None else "given as haadf=" if haadf is not None
                  else "the maps' reference images (metadata.Tomography.reference_images)"),
        "haadf_volume": "none" if guide_volume is None else "given as haadf_volume=",
        "haadf_masked_pixels": 0 if haadf_mask is None else int(np.size(haadf_mask) - np.count_nonzero(haadf_mask)),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    append_history(vol, "reconstruction", method, params)
    _logger.info("%s reconstruction of %s: volume %s in %.1f s", method, list(maps.elements), data.shape,
                 params["seconds"])
    if is_lazy(maps):
        vol = vol.as_lazy()
    if return_intermediates:
        return vol, _intermediate_signals(result.intermediates, maps, vol)
    return vol


def _intermediate_signals(intermediates, maps, vol):
    """Wrap an algorithm's intermediate arrays as signals of this project.

    ``intermediates`` maps a name to ``("maps", array (element, tilt, y, x), tilts)``,
    ``("volume", array (element, z, y, x))``, ``("table", dict)`` or
    ``("object", anything)`` (e.g. a trained denoiser); the last two pass through as they are.
    """
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
    b = maps.background  # float32 numpy array (computed when lazy) or None
    if b is None:
        return None
    if b.shape != tuple(shape):
        raise InputError(f"The maps' background (metadata.Tomography.background) is shaped {b.shape}, the maps "
                         f"{tuple(shape)}: they must match.")
    b = check_counts(b, "maps' background (metadata.Tomography.background)", integer=False).astype(np.float32)
    if not np.any(b):
        return None
    # b is estimated pixel by pixel from side windows, as noisy as counts; the continuum itself varies
    # slowly (support film, mass thickness): a mild smoothing keeps its shape and drops most of the
    # noise, which the model would otherwise take for signal
    return ndimage.gaussian_filter(b, (0, 0, BACKGROUND_SIGMA_PX, BACKGROUND_SIGMA_PX), mode="nearest")


def _haadf_of(maps, haadf, algorithm, shape):
    """The HAADF views ``(tilt, y, x)`` and mask for an algorithm that uses them (``haadf=``, else the
    maps' reference images, else None), checked against the maps; refuses ``haadf=`` for one that does not."""
    if not algorithm.uses_haadf:
        if haadf is not None:
            raise InputError(f"Method {algorithm.name!r} does not use a HAADF series; methods that do: "
                             f"{_haadf_methods()}.")
        return None, None
    source = haadf if haadf is not None else maps.reference_images
    if source is None:
        return None, None
    if haadf is not None and maps.metadata.has_item(f"{NODE}.alignment") and not hasattr(haadf, "metadata"):
        warn("These maps were aligned and haadf= is a plain array: it must be aligned the same way "
             "(maps.apply_alignment(haadf_signal)), or the HAADF term fits the wrong pixels.")
    _, n_t, n_y, n_x = shape
    return check_haadf(source, n_t, (n_y, n_x), maps.tilts)


def _haadf_methods():
    """The installed methods that always use the HAADF (``two_step`` does with ``mbir="fused"``)."""
    return [n for n, c in reconstruction_algorithms().items() if c.uses_haadf is True]


def _haadf_volume_of(volume, algorithm, shape):
    """A HAADF tomogram given as ``haadf_volume=`` for an algorithm that uses the HAADF, checked, or None."""
    if volume is None:
        return None
    if not algorithm.uses_haadf:
        raise InputError(f"Method {algorithm.name!r} does not use a HAADF volume; methods that do: "
                         f"{_haadf_methods()}.")
    data = volume.data if hasattr(volume, "data") else volume
    data = np.asarray(data.compute() if hasattr(data, "compute") else data, np.float64)
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    if data.shape != tuple(shape):
        raise InputError(f"haadf_volume is shaped {data.shape}; the reconstruction is (z, y, x) = {tuple(shape)}: "
                         "reconstruct the HAADF series on the maps' pixels and the same depth (n_z).")
    data = check_finite(data, "haadf_volume")
    if not np.ptp(data) > 0:
        raise InputError("haadf_volume is constant: it has no edges to guide the reconstruction.")
    return data.astype(np.float32)


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
            raise InputError(f"View(s) at tilt(s) {where} deg hold no signal in any element: "
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


def rotate_views(counts, rotation_deg, clip=True):
    """Turn every view so that a tilt axis at ``rotation_deg`` (counter-clockwise
    from the rows' direction) runs along the rows.

    Bilinear, same size, zero outside the field of view: counts inside it are
    kept up to interpolation, counts rotated out of it are lost. ``clip``:
    negative values (interpolation ringing of counts) are set to 0.
    """
    from scipy.ndimage import rotate

    flat = counts.reshape(-1, *counts.shape[-2:]).astype(np.float32)
    out = np.stack([rotate(v, -rotation_deg, reshape=False, order=1, mode="constant", cval=0.0) for v in flat])
    return (np.clip(out, 0, None) if clip else out).reshape(counts.shape)


reconstruct.__doc__ = f"""Reconstruct every element of an element-map tilt series.

    Parameters
    ----------
    method : str
        A reconstruction plugin: ``hyperspy_edxtomo.list_algorithms()`` lists
        the installed ones and their parameters. Default ``"{DEFAULT_METHOD}"``
        (:data:`DEFAULT_METHOD`, the default of the pipeline, ``edxtomo`` and
        the FSC too).
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
        task, so a ``dask.distributed`` client spreads them over its workers;
        the methods that solve every element at once (``fused``, ``tv`` with
        ``couple_elements``) run their batches in this process and share
        ``batch_size`` among the elements.
    cuda : None or bool
        None: use CUDA when present.
    {SHOW_PROGRESSBAR_ARG}
    haadf : None, Signal2D or array
        For methods that use the HAADF (``"fused"``): the HAADF tilt series
        ``(tilt, y, x)``, the maps' views and pixels (aligned as they are);
        None takes the maps' reference images
        (``metadata.Tomography.reference_images``). Methods that do not use
        it refuse it.
    haadf_volume : None, signal or array
        For methods that use the HAADF: a HAADF tomogram ``(z, y, x)`` of
        this reconstruction's shape (``n_z`` deep, the maps' pixels, after
        ``rotation_deg``), e.g. reconstructed from a HAADF tilt series with
        more tilts than the maps. Its edges guide the regulariser in place of
        those of the volume reconstructed from ``haadf`` (the guide's strength
        is still chosen on held-out counts). With it, ``haadf`` may be absent.
    seed : int
        Seed of everything random in the method: the count split of
        ``lam="auto"``, the networks of ``two_step`` and ``end_to_end``
        (``context.seed`` for plugins). Recorded in the history; the same
        seed gives the same volume on the same device.
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
