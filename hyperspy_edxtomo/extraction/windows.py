"""X-ray line windows: element maps from a spectrum-image tilt series (exspy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from hyperspy_edxtomo.base.conventions import NODE, check_elements, to_nm
from hyperspy_edxtomo.base.docstrings import SHOW_PROGRESSBAR_ARG
from hyperspy_edxtomo.base.errors import InputError, InputTypeError
from hyperspy_edxtomo.base.private_api import (
    axis_names,
    is_lazy,
    lines_from_elements,
    xray_lines_in_range,
)
from hyperspy_edxtomo.base.progress import progress_bar, show_progress
from hyperspy_edxtomo.base.provenance import append_history, get_history
from hyperspy_edxtomo.extraction.background import (
    NEGATIVE_CHOICES,
    Negative,
    apply_negative,
)
from hyperspy_edxtomo.signals.background import set_background
from hyperspy_edxtomo.signals.edx_tilt_series import EDXTiltSeries
from hyperspy_edxtomo.signals.element_maps import ElementMapTiltSeries, maps_signal
from hyperspy_edxtomo.signals.methods import signal_method

__all__ = ["get_element_maps"]


@signal_method(EDXTiltSeries)
def get_element_maps(
    series: EDXTiltSeries,
    elements: Sequence[str] | None = None,
    xray_lines: Sequence[str] | None = None,
    integration_windows: float = 2.0,
    background_windows: Literal["auto"] | None | np.ndarray = "auto",
    negative: Negative = "clip",
    show_progressbar: bool | None = None,
    subtract_background: bool = False,
) -> ElementMapTiltSeries:
    """X-ray line maps of every element at every tilt.

    The counts in a window around each element's X-ray line (exspy's
    ``get_lines_intensity``): raw integer counts by default, with the
    background under each line, measured in two windows beside it
    (exspy's ``estimate_background_windows``), attached as a term of the
    forward model ``y ~ Poisson(A x + b)`` rather than subtracted.

    Parameters
    ----------
    elements : None or list of str
        Chemical symbols, e.g. ``["Se", "S", "Zn"]``. If None, the
        elements in ``metadata.Sample.elements`` are used.
    xray_lines : None or list of str
        One line per element, e.g. ``["Se_Ka", "S_Ka", "Zn_Ka"]``. If
        None, exspy picks for each element its highest-energy alpha line
        below half the beam energy.
    integration_windows : float
        Window width in units of the line's FWHM (detector resolution).
    background_windows : "auto", None or array
        ``"auto"``: two windows beside each line (exspy's
        ``estimate_background_windows(line_width=[2, 2], windows_width=1)``);
        an array as returned by ``estimate_background_windows``, one row
        per element; or None: no background at all (raw window counts,
        nothing attached).
    negative : {"clip", "keep", "raise"}
        With ``subtract_background=True`` only: what to do with pixels
        whose background-subtracted value is negative (common at a few
        counts per pixel): ``"clip"`` sets them to 0 (the count total
        then slightly overestimates the line counts), ``"keep"`` keeps
        them (an unbiased estimate, but not counts), ``"raise"`` raises a
        ValueError.
    %s
    subtract_background : bool
        False (default): the maps are the raw window counts (exact Poisson
        counts, what ``lam="auto"``, the count-split FSC and ``two_step``
        need) and the background estimate ``b`` (exspy's two side windows
        interpolated under the line, clipped at 0), per element, tilt and
        pixel, is attached as ``metadata.Tomography.background``
        (:attr:`ElementMapTiltSeries.background
        <hyperspy_edxtomo.signals.ElementMapTiltSeries.background>`).
        True: the maps are counts minus ``b`` (``negative`` applies) and
        carry no background; the same as
        ``get_element_maps().subtract_background()``.

    Returns
    -------
    ElementMapTiltSeries
        Shape (element, tilt, y, x), element names in
        ``metadata.Sample.elements``, lines in ``metadata.Sample.xray_lines``,
        lazy when this series is lazy (and then so is the background).
        The last ``history`` step records ``background``: ``"attached"``,
        ``"subtracted"`` or ``"none"``.

    Raises
    ------
    ValueError
        For no elements, an unknown element or X-ray line, an element with
        no line in the series' energy range or only one in the detector's
        zero-energy noise peak (H, He), or a line whose integration or
        background windows leave the energy range.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo import datasets
    >>> s = datasets.quantum_dot_tilt_series(size=32, seed=0)
    >>> maps = s.get_element_maps(["Se", "S", "Zn"])
    >>> maps.elements
    ['Se', 'S', 'Zn']
    >>> bool(np.all(maps.data == np.round(maps.data))), maps.background.shape == maps.data.shape
    (True, True)
    >>> net = s.get_element_maps(["Se", "S", "Zn"], subtract_background=True)
    >>> net.background is None
    True
    """
    if negative not in NEGATIVE_CHOICES:
        raise InputError(f"negative must be one of {NEGATIVE_CHOICES}, got {negative!r}")
    if not isinstance(subtract_background, (bool, np.bool_)):
        raise InputTypeError(f"subtract_background must be True or False, got {subtract_background!r}")
    subtract_background = bool(subtract_background)
    if subtract_background and background_windows is None:
        raise InputError(
            "subtract_background=True needs background windows: pass background_windows='auto' (or an array), "
            "or keep background_windows=None for raw counts without a background."
        )
    tilts = series.tilts
    if elements is None:
        elements = list(series.metadata.get_item("Sample.elements", []))
        if not elements:
            raise InputError(
                "No elements given and none in metadata.Sample.elements: "
                "call get_element_maps(elements=['Se', 'S', 'Zn']) or s.set_elements([...])."
            )
    elements = check_elements(elements)
    if xray_lines is None:
        xray_lines = []
        for el in elements:
            try:
                lines = lines_from_elements(series, [el], only_one=True, only_lines=("a",))
            except KeyError:  # exspy's database lists no X-ray line at all for it (Li)
                lines = []
            if not lines:
                ax = series.axes_manager.signal_axes[0]
                raise InputError(
                    f"Element {el} has no X-ray line in the energy range "
                    f"{ax.low_value:.3g} to {ax.high_value:.3g} {ax.units} of this series."
                )
            xray_lines.append(lines[0])
    else:
        xray_lines = [str(line) for line in xray_lines]
        if len(xray_lines) != len(elements):
            raise InputError(f"Give one X-ray line per element: {len(xray_lines)} lines for {elements}.")
        for el, line in zip(elements, xray_lines):
            if not line.startswith(el + "_"):
                raise InputError(f"X-ray line {line!r} does not belong to element {el!r}.")
        for line in xray_lines:
            try:
                xray_lines_in_range(series, [line])
            except KeyError:  # exspy's database has no such line (Li_Ka, Se_Kz)
                raise InputError(f"Unknown X-ray line {line!r}: exspy's database does not list it.") from None
        _, missing = xray_lines_in_range(series, xray_lines)
        if missing:
            raise InputError(f"X-ray lines {missing} are outside the energy range of this series.")

    iw = series.estimate_integration_windows(windows_width=integration_windows, xray_lines=xray_lines)
    if isinstance(background_windows, str):
        if background_windows != "auto":
            raise InputError(f"background_windows must be 'auto', None or an array, got {background_windows!r}")
        bw = series.estimate_background_windows(line_width=[2, 2], windows_width=1, xray_lines=xray_lines)
    elif background_windows is None:
        bw = None
    else:
        bw = np.asarray(background_windows, dtype=float)
        if bw.shape != (len(xray_lines), 4):
            raise InputError(f"background_windows must be shaped ({len(xray_lines)}, 4), got {bw.shape}")
    _check_windows(series, xray_lines, iw, bw)

    layers, background = [], []
    for i in progress_bar(range(len(xray_lines)), desc="Element maps", show=show_progress(show_progressbar)):
        kwargs = {"xray_lines": [xray_lines[i]], "integration_windows": iw[i : i + 1]}
        if bw is None or not subtract_background:
            # the raw window counts: exact Poisson counts
            raw = series.get_lines_intensity(background_windows=None, **kwargs)[0].data  # (tilt, y, x)
            layers.append(raw)
        if bw is not None:
            net = series.get_lines_intensity(background_windows=bw[i : i + 1], **kwargs)[0].data
            if subtract_background:
                layers.append(net)
            else:
                # exspy's background: the two side windows, linearly interpolated and scaled to the
                # line window, i.e. raw - net. Clipped at 0 because it is the mean of the Poisson
                # counts y ~ Poisson(A x + b), which cannot be negative; the difference of the two
                # float sums is off zero by rounding where the side windows are empty, and spectra
                # that are not raw counts (processed vendor data) can dip below 0.
                background.append((raw - net).clip(0, None))

    stack = np.stack
    if is_lazy(series):
        import dask.array as da

        stack = da.stack
    data = stack(layers)
    if subtract_background:
        data = apply_negative(data, negative, is_lazy(series))
    # scan axes are (x, y) navigation axes of the spectra; keep their calibration in nm
    ax_y = series.axes_manager["y"] if "y" in axis_names(series) else series.axes_manager.navigation_axes[1]
    scale, units = to_nm(ax_y.scale, ax_y.units)
    md = {}
    if series.reference_images is not None:
        md[NODE] = {"reference_images": series.reference_images.deepcopy()}
    maps = maps_signal(data, tilts, elements, scale, units, metadata=md, title=f"Element maps of {series.metadata.General.title}")
    if background:
        set_background(maps, stack(background))
    maps.metadata.set_item("Sample.xray_lines", list(xray_lines))
    if series.metadata.has_item("Acquisition_instrument"):
        maps.metadata.set_item("Acquisition_instrument", series.metadata.Acquisition_instrument.deepcopy())
    maps.metadata.set_item(f"{NODE}.history", get_history(series))
    append_history(
        maps,
        "element_maps",
        "exspy_line_windows",
        {
            "elements": elements,
            "xray_lines": xray_lines,
            "integration_windows": integration_windows,
            "background_windows": None if bw is None else bw,
            "subtract_background": subtract_background,
            # "attached": raw counts, b in metadata.Tomography.background; "subtracted": counts - b; "none"
            "background": "none" if bw is None else ("subtracted" if subtract_background else "attached"),
            "negative": negative,
        },
    )
    return maps


get_element_maps.__doc__ %= SHOW_PROGRESSBAR_ARG


def _check_windows(series, xray_lines, integration, background):
    """Refuse a line whose windows cannot hold its counts: a window reaching 0 (the line sits in the
    detector's zero-energy noise peak: H_Ka, He_Ka) or leaving the recorded energies."""
    ax = series.axes_manager.signal_axes[0]
    lo, hi, units = ax.low_value, ax.high_value, ax.units
    recorded = f"the energy range {lo:.3g} to {hi:.3g} {units} of this series"
    for line, (w0, w1), bg in zip(xray_lines, np.asarray(integration, float),
                                  [None] * len(xray_lines) if background is None else background):
        el = line.split("_")[0]
        where = f"{line} at {(w0 + w1) / 2:.3g} {units} (window {w0:.3g} to {w1:.3g} {units})"
        if w0 <= 0:
            raise InputError(f"Element {el} has no X-ray line an EDX detector can count in {recorded}: {where} "
                             f"lies in the detector's zero-energy noise peak, so its counts would be noise. "
                             f"Leave {el} out of the elements.")
        if w0 < lo or w1 > hi:
            raise InputError(f"The window of {where} of element {el} leaves {recorded}. Leave {el} out of the "
                             "elements, or choose another line with xray_lines=.")
        if bg is not None and (np.min(bg) < lo or np.max(bg) > hi):
            raise InputError(f"The background windows of {line} of element {el} ({np.min(bg):.3g} to "
                             f"{np.max(bg):.3g} {units}) leave {recorded}: pass background_windows=None (the "
                             "command line: --no-background) or windows inside it.")
