"""Element-map tilt series: X-ray counts per element, per tilt, per pixel."""

import numpy as np
from hyperspy.signals import LazySignal2D, Signal2D

from ..metadata import NODE, TILT_AXIS, append_history, get_history
from ..progress import progress_bar, show_progress
from ._background import background_data, check_background, compute_background, set_background
from ._tilts import TiltSeriesMixin, check_tilts, element_axis_dict, tilt_axis_dict

SIGNAL_TYPE = "EDX_element_maps"
NEGATIVE_CHOICES = ("clip", "keep", "raise")
TILT_AXIS_CHOICES = ("rows", "columns")


class ElementMapTiltSeries(TiltSeriesMixin, Signal2D):
    """Element maps at every tilt: navigation (tilt, element) | (x, y).

    The data are shaped ``(element, tilt, y, x)`` in numpy order; rows (y)
    run along the tilt axis. Element names are in :attr:`elements`, tilt
    angles (degrees) in :attr:`tilts`; take one element out with
    :meth:`element`. Raw X-ray counts may carry the background expected
    under each line, :attr:`background` (``metadata.Tomography.background``,
    the same shape): the forward model is then ``y ~ Poisson(A x + b)``.

    Examples
    --------
    >>> import numpy as np
    >>> import hyperspy_edxtomo as het
    >>> counts = np.random.default_rng(0).poisson(0.05, (3, 13, 64, 64))
    >>> maps = het.element_maps_from_array(
    ...     counts, np.linspace(-60, 60, 13), ["Se", "S", "Zn"], pixel_size_nm=0.189)
    >>> maps.element("Zn").data.shape
    (1, 13, 64, 64)
    """

    _signal_type = SIGNAL_TYPE

    @property
    def pixel_size(self):
        """Pixel size ``(value, units)`` of the maps (square pixels)."""
        ax = self.axes_manager.signal_axes[0]
        return float(ax.scale), ax.units

    @property
    def background(self):
        """Expected background counts under each line, or None.

        A float32 numpy array shaped like the data, ``(element, tilt, y,
        x)`` (computed when lazy), from ``metadata.Tomography.background``:
        the term ``b`` of the forward model ``y ~ Poisson(A x + b)``. Maps
        from :meth:`EDXTiltSeries.get_element_maps
        <hyperspy_edxtomo.signals.EDXTiltSeries.get_element_maps>` carry it
        (exspy's background windows) unless made with
        ``background_windows=None`` or ``subtract_background=True``.

        Examples
        --------
        >>> import numpy as np
        >>> import hyperspy_edxtomo as het
        >>> counts = np.ones((1, 3, 4, 4), dtype=np.uint8)
        >>> maps = het.element_maps_from_array(counts, [-30, 0, 30], ["Zn"],
        ...                                    background=np.full(counts.shape, 0.25))
        >>> maps.background.dtype, float(maps.background.sum())
        (dtype('float32'), 12.0)
        """
        data = background_data(self)
        if data is None:
            return None
        if hasattr(data, "compute"):
            data = data.compute()
        return np.asarray(data, dtype=np.float32)

    def subtract_background(self, negative="clip"):
        """The maps minus their background: ``data - background``.

        Parameters
        ----------
        negative : {"clip", "keep", "raise"}
            Pixels where the difference is negative (common at a few counts
            per pixel): ``"clip"`` sets them to 0, ``"keep"`` keeps them
            (unbiased, but not counts), ``"raise"`` raises a ValueError.

        Returns
        -------
        ElementMapTiltSeries
            Background-subtracted maps (lazy when these are), without a
            background; the step is in ``history``. They are no longer
            Poisson counts: count-based methods (``lam="auto"``, the
            count-split FSC, ``two_step``) need the raw maps.

        Raises
        ------
        ValueError
            When the maps carry no background.

        Examples
        --------
        >>> import numpy as np
        >>> import hyperspy_edxtomo as het
        >>> counts = np.full((1, 3, 4, 4), 2, dtype=np.uint8)
        >>> maps = het.element_maps_from_array(counts, [-30, 0, 30], ["Zn"],
        ...                                    background=np.full(counts.shape, 0.5))
        >>> net = maps.subtract_background()
        >>> float(net.data.max()), net.background is None
        (1.5, True)
        """
        return _subtract_background(self, negative)

    def reconstruct(self, method="sirt", **kwargs):
        from ..reconstruction import reconstruct

        return reconstruct(self, method=method, **kwargs)

    def fourier_shell_correlation(self, method="tv", split="counts", seed=0, raw=None, return_volumes=False,
                                  **kwargs):
        """FSC of two reconstructions of independent halves of these maps.

        Halves: binomially split counts (``split="counts"``) or even/odd
        tilts (``"tilts"``); for aligned maps pass the unaligned counts as
        ``raw``. See :func:`hyperspy_edxtomo.analysis.fsc_from_tilt_series`
        (``kwargs``: ``elements``, ``mask``, ... and the reconstruction's
        parameters).
        """
        from ..analysis.fsc import fsc_from_tilt_series

        return fsc_from_tilt_series(self, method=method, split=split, seed=seed, raw=raw,
                                    return_volumes=return_volumes, **kwargs)

    def align(self, method="auto", show_progressbar=None, **kwargs):
        """Align the views; see :func:`hyperspy_edxtomo.alignment.align`."""
        from ..alignment import align

        return align(self, method=method, show_progressbar=show_progressbar, **kwargs)

    def apply_alignment(self, other):
        """Move ``other`` (a series of the same views) by this series' stored alignment."""
        from ..alignment import apply_alignment

        return apply_alignment(other, self)

    def denoise(self, method="gaussian", show_progressbar=None, **parameters):
        """Denoise the maps with an installed denoiser plugin.

        Parameters
        ----------
        method : str
            A denoiser name: ``"gaussian"``, ``"moving_average"`` (the paper's
            11 x 11 average), ``"pca"``, ``"nmf"``, ``"bm3d"`` (optional package),
            ``"deep"`` (see :meth:`denoise_deep`) or any plugin's
            (``hyperspy_edxtomo.denoisers.list_denoisers()``).
        show_progressbar : None or bool
            None: HyperSpy's preference.
        **parameters
            The method's parameters (validated; errors list them).

        Returns
        -------
        ElementMapTiltSeries
            Expected counts per pixel (float32): every (element, tilt) map
            sums to its raw count total. Method and parameters (and seed) in
            ``history``.
        """
        from ..denoisers import denoise

        return denoise(self, method=method, show_progressbar=show_progressbar, **parameters)

    def denoise_deep(self, model=None, return_model=False, show_progressbar=None, **parameters):
        """Self-supervised deep denoising by Poisson count splitting.

        A small U-Net (elements as channels) is trained on these maps: each
        count goes at random to the network input or to the target, the loss
        is the Poisson likelihood of the target, early stopping on held-out
        counts (see :mod:`hyperspy_edxtomo.denoising_net`).

        Parameters
        ----------
        model : None, str, path or CountSplitDenoiserModel
            A trained model (or a file written by its ``save``): applied
            without training. Its elements must be those of the maps.
        return_model : bool
            Also return the trained model (to ``save`` or reuse).
        show_progressbar : None or bool
        **parameters
            Settings of the ``"deep"`` denoiser: ``training``
            (``"count_split"``, ``"frame_split"`` with ``frames=``, or
            ``"blind_spot"``), ``frames`` (repeated frames: an array (frame,
            element, tilt, y, x) or one maps signal per frame, summing to
            these maps), ``joint`` (all-element sum as an extra channel),
            ``blind_spot_fraction``, ``thinned_inference``, ``levels``,
            ``channels``, ``steps``, ``batch_size``, ``patch_size``,
            ``learning_rate``, ``split_fraction``, ``validation_fraction``,
            ``eval_every``, ``patience``, ``tta``, ``seed``, ``cuda`` (None:
            CUDA when present). ``edxtomo denoisers`` lists them with their
            defaults.

        Returns
        -------
        ElementMapTiltSeries or (ElementMapTiltSeries, CountSplitDenoiserModel)
        """
        from ..denoisers import denoise, get_denoiser
        from ..denoising_net import CountSplitDenoiserModel

        cls = get_denoiser("deep")
        if model is not None:
            extra = set(parameters) - {"cuda"}
            if extra:
                raise ValueError(f"With model=, training settings {sorted(extra)} do not apply; only cuda= does.")
            if not isinstance(model, CountSplitDenoiserModel):
                model = CountSplitDenoiserModel.load(model)
            model.check_elements(self.elements)
        den = cls.create(**parameters)
        den._model = model
        out = denoise(self, method="deep", show_progressbar=show_progressbar, _instance=den)
        return (out, den._model) if return_model else out


def _reconstruct_doc():
    from ..reconstruction import reconstruct

    return reconstruct.__doc__ + """
    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> maps = datasets.quantum_dot_element_maps(size=32, seed=0)
    >>> vol = maps.reconstruct(method="sirt", iterations=20)
    >>> vol.history[-1]["method"]
    'sirt'
    """


ElementMapTiltSeries.reconstruct.__doc__ = _reconstruct_doc()


class LazyElementMapTiltSeries(ElementMapTiltSeries, LazySignal2D):
    """Lazy (dask) twin of :class:`ElementMapTiltSeries`."""

    def compute(self, *args, **kwargs):
        # the background node is computed too (before the data, whose file
        # ``close_file=True`` may close), so that it is not re-read on every use
        compute_background(self, show_progressbar=kwargs.get("show_progressbar"))
        return super().compute(*args, **kwargs)


def _check_elements(elements, n_expected=None):
    from exspy.material import elements as elements_db

    if isinstance(elements, str):
        elements = [elements]
    elements = [str(e) for e in elements]
    unknown = [e for e in elements if e not in elements_db]
    if unknown:
        raise ValueError(f"Unknown element(s) {unknown}: use chemical symbols such as 'Se', 'S', 'Zn'.")
    if len(set(elements)) != len(elements):
        raise ValueError(f"Repeated element names {elements}.")
    if n_expected is not None and len(elements) != n_expected:
        raise ValueError(
            f"{len(elements)} element names {elements} for {n_expected} element maps "
            "(counts are shaped (element, tilt, row, column))."
        )
    return elements


def _build(data, tilts, elements, scale, units, metadata=None, title="Element maps"):
    axes = [
        element_axis_dict(len(elements)),
        tilt_axis_dict(tilts),
        {"name": "y", "size": data.shape[2], "offset": 0.0, "scale": scale, "units": units, "navigate": False},
        {"name": "x", "size": data.shape[3], "offset": 0.0, "scale": scale, "units": units, "navigate": False},
    ]
    md = dict(metadata or {})
    md["General"] = {**md.get("General", {}), "title": title}
    md["Signal"] = {"signal_type": SIGNAL_TYPE}
    md["Sample"] = {**md.get("Sample", {}), "elements": list(elements)}
    md.setdefault(NODE, {})["tilt_axis"] = TILT_AXIS
    lazy = not isinstance(data, np.ndarray)
    cls = LazyElementMapTiltSeries if lazy else ElementMapTiltSeries
    return cls(data, axes=axes, metadata=md)


def element_maps_from_array(counts, tilts_deg, elements, pixel_size_nm=None, tilt_axis="rows", title="Element maps",
                            background=None):
    """Build an element-map tilt series from plain arrays.

    Parameters
    ----------
    counts : array-like or dask array
        X-ray counts shaped (element, tilt, row, column). Must be finite and
        non-negative. A dask array gives a lazy signal.
    tilts_deg : array-like
        One tilt angle per view, in degrees. Views are sorted by tilt.
    elements : list of str
        One chemical symbol per map, in the order of the first axis.
    pixel_size_nm : None or float
        Pixel size in nm. None leaves the axes in pixels (units ``"px"``).
    tilt_axis : {"rows", "columns"}
        Direction of the tilt axis in the images. ``"rows"`` (default): the
        tilt axis runs along the rows (vertical). ``"columns"``: the images are
        transposed so that it does.
    title : str
    background : None or array-like
        Expected background counts under each line, shaped like ``counts``
        (in the same layout and tilt order), finite and >= 0: the ``b`` of
        ``y ~ Poisson(A x + b)``, kept in ``metadata.Tomography.background``
        (see :attr:`ElementMapTiltSeries.background`). None: no background.

    Returns
    -------
    ElementMapTiltSeries

    Raises
    ------
    ValueError
        Counts or background of the wrong shape, negative or not finite;
        tilts or elements that do not fit.
    TypeError
        A background that is not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> import hyperspy_edxtomo as het
    >>> counts = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    >>> maps = het.element_maps_from_array(counts, [-60, 0, 60], ["S", "Zn"], pixel_size_nm=0.2)
    >>> maps.tilts.tolist(), maps.elements
    ([-60.0, 0.0, 60.0], ['S', 'Zn'])
    """
    if tilt_axis not in TILT_AXIS_CHOICES:
        raise ValueError(f"tilt_axis must be one of {TILT_AXIS_CHOICES}, got {tilt_axis!r}")
    lazy = hasattr(counts, "dask")
    if not lazy:
        counts = np.asarray(counts)
    if counts.ndim != 4:
        raise ValueError(f"counts must be shaped (element, tilt, row, column); got shape {counts.shape}")
    if counts.size == 0:
        raise ValueError(f"counts is empty (shape {counts.shape}).")
    if not (np.issubdtype(counts.dtype, np.integer) or np.issubdtype(counts.dtype, np.floating)):
        raise ValueError(f"counts must be numeric, got dtype {counts.dtype}")
    elements = _check_elements(elements, counts.shape[0])
    tilts = check_tilts(tilts_deg, counts.shape[1])
    if not lazy:
        if np.issubdtype(counts.dtype, np.floating) and not np.all(np.isfinite(counts)):
            bad = np.argwhere(~np.isfinite(counts))[0]
            raise ValueError(f"counts contain NaN or infinite values (first at element, tilt, row, column = {tuple(bad)}).")
        if np.any(counts < 0):
            raise ValueError("counts contain negative values: X-ray counts are >= 0.")
    if background is not None:
        background = check_background(background, counts.shape)
    if tilt_axis == "columns":
        counts = counts.transpose(0, 1, 3, 2)
        if background is not None:
            background = background.transpose(0, 1, 3, 2)
    order = np.argsort(tilts, kind="stable")
    if np.any(order != np.arange(order.size)):
        counts, tilts = counts[:, order], tilts[order]
        if background is not None:
            background = background[:, order]
    scale, units = (1.0, "px") if pixel_size_nm is None else (float(pixel_size_nm), "nm")
    if pixel_size_nm is not None and not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"pixel_size_nm must be a positive number, got {pixel_size_nm}")
    maps = _build(counts, tilts, elements, scale, units, title=title)
    set_background(maps, background)
    append_history(
        maps,
        "element_maps",
        "from_array",
        {"elements": elements, "pixel_size_nm": pixel_size_nm, "tilt_axis": tilt_axis,
         "background": "attached" if background is not None else "none"},
    )
    return maps


def maps_from_tilt_series(
    series,
    elements=None,
    xray_lines=None,
    integration_windows=2.0,
    background_windows="auto",
    negative="clip",
    subtract_background=False,
    show_progressbar=None,
):
    """Implementation of :meth:`EDXTiltSeries.get_element_maps`."""
    if negative not in NEGATIVE_CHOICES:
        raise ValueError(f"negative must be one of {NEGATIVE_CHOICES}, got {negative!r}")
    if not isinstance(subtract_background, (bool, np.bool_)):
        raise TypeError(f"subtract_background must be True or False, got {subtract_background!r}")
    subtract_background = bool(subtract_background)
    if subtract_background and background_windows is None:
        raise ValueError(
            "subtract_background=True needs background windows: pass background_windows='auto' (or an array), "
            "or keep background_windows=None for raw counts without a background."
        )
    tilts = series.tilts
    if elements is None:
        elements = list(series.metadata.get_item("Sample.elements", []))
        if not elements:
            raise ValueError(
                "No elements given and none in metadata.Sample.elements: "
                "call get_element_maps(elements=['Se', 'S', 'Zn']) or s.set_elements([...])."
            )
    elements = _check_elements(elements)
    if xray_lines is None:
        xray_lines = []
        for el in elements:
            lines = series._get_lines_from_elements([el], only_one=True, only_lines=("a",))
            if not lines:
                ax = series.axes_manager.signal_axes[0]
                raise ValueError(
                    f"Element {el} has no X-ray line in the energy range "
                    f"{ax.low_value:.3g} to {ax.high_value:.3g} {ax.units} of this series."
                )
            xray_lines.append(lines[0])
    else:
        xray_lines = [str(line) for line in xray_lines]
        if len(xray_lines) != len(elements):
            raise ValueError(f"Give one X-ray line per element: {len(xray_lines)} lines for {elements}.")
        for el, line in zip(elements, xray_lines):
            if not line.startswith(el + "_"):
                raise ValueError(f"X-ray line {line!r} does not belong to element {el!r}.")
        _, missing = series._get_xray_lines_in_spectral_range(xray_lines)
        if missing:
            raise ValueError(f"X-ray lines {missing} are outside the energy range of this series.")

    iw = series.estimate_integration_windows(windows_width=integration_windows, xray_lines=xray_lines)
    if isinstance(background_windows, str):
        if background_windows != "auto":
            raise ValueError(f"background_windows must be 'auto', None or an array, got {background_windows!r}")
        bw = series.estimate_background_windows(line_width=[2, 2], windows_width=1, xray_lines=xray_lines)
    elif background_windows is None:
        bw = None
    else:
        bw = np.asarray(background_windows, dtype=float)
        if bw.shape != (len(xray_lines), 4):
            raise ValueError(f"background_windows must be shaped ({len(xray_lines)}, 4), got {bw.shape}")

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
    if series._lazy:
        import dask.array as da

        stack = da.stack
    data = stack(layers)
    if subtract_background:
        data = _apply_negative(data, negative, series._lazy)
    # scan axes are (x, y) navigation axes of the spectra; keep their calibration in nm
    ax_y = series.axes_manager["y"] if "y" in [a.name for a in series.axes_manager._axes] else series.axes_manager.navigation_axes[1]
    scale, units = _to_nm(ax_y.scale, ax_y.units)
    md = {}
    if series.reference_images is not None:
        md[NODE] = {"reference_images": series.reference_images.deepcopy()}
    maps = _build(data, tilts, elements, scale, units, metadata=md, title=f"Element maps of {series.metadata.General.title}")
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


def _apply_negative(data, negative, lazy):
    """Handle the negative pixels of background-subtracted maps (see ``negative``)."""
    if negative == "clip":
        return data.clip(0, None)
    if negative == "raise":
        if lazy:
            raise ValueError("negative='raise' needs the values: compute() the series first or use 'clip'/'keep'.")
        if np.any(data < 0):
            n = int((data < 0).sum())
            raise ValueError(f"{n} pixels are negative after background subtraction (negative='raise').")
    return data


def _subtract_background(maps, negative="clip"):
    """Implementation of :meth:`ElementMapTiltSeries.subtract_background`."""
    if negative not in NEGATIVE_CHOICES:
        raise ValueError(f"negative must be one of {NEGATIVE_CHOICES}, got {negative!r}")
    b = background_data(maps)
    if b is None:
        raise ValueError(
            "These maps carry no background (metadata.Tomography.background): there is nothing to subtract. "
            "get_element_maps() attaches one unless called with background_windows=None or "
            "subtract_background=True (then the maps are already raw counts without one, or subtracted)."
        )
    if not maps._lazy and hasattr(b, "compute"):
        b = b.compute()
    data = maps.data - b
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float64)
    data = _apply_negative(data, negative, maps._lazy)
    out = maps._deepcopy_with_new_data(data)
    set_background(out, None)
    out.metadata.General.title = f"{maps.metadata.General.title} (background subtracted)"
    append_history(out, "background", "subtract", {"negative": negative})
    return out




def _to_nm(scale, units):
    factors = {"nm": 1.0, "µm": 1e3, "um": 1e3, "Å": 0.1, "A": 0.1, "pm": 1e-3, "mm": 1e6, "m": 1e9}
    if units in factors:
        return float(scale) * factors[units], "nm"
    return float(scale), units if units not in (None, "<undefined>") else "px"
