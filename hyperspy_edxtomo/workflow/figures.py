"""PNG figures with matplotlib (no screen needed, Agg backend).

Every function writes one PNG and returns its path. Images follow the axis
conventions of :mod:`hyperspy_edxtomo.signals.tilts`: an ``xy`` section is
shown like the 0-degree view (x across, y -- the tilt axis -- down), ``xz``
with z (the beam at 0 degrees) down, ``yz`` with y down and z across. Axes
are in nm (the volume's units), with one origin everywhere: the centre of
the box (the volume's axes), as in the particle tables. Every image row
carries a scale bar and a colour bar in the data's units; each element's
colour scale (and any smoothing for display) is stated on the figure.
"""

import numpy as np

from hyperspy_edxtomo.analysis.shells import direction_grid
from hyperspy_edxtomo.base.counts import is_counts
from hyperspy_edxtomo.base.errors import InputError


def _subplots(nrows=1, ncols=1, *, figsize, layout=None, **kwargs):
    """A figure and its axes, made without pyplot: no backend switched, no figure left open
    in the user's session (the figures here are written to files, not shown)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig, path):
    """Write ``fig`` to the PNG ``path`` (folders made as needed) and close it."""
    from pathlib import Path

    if not fig.get_constrained_layout():
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def tilt_montage(maps, path, smooth_px=1.0, max_views=13):
    """Save a montage of an element-map tilt series as PNG: one row per element.

    Parameters
    ----------
    maps : ElementMapTiltSeries
    path : str or Path
        Output PNG file.
    smooth_px : float
        Gaussian smoothing (pixels) for display only: maps with mostly 0/1
        counts are unreadable unsmoothed. 0 shows the raw counts.
    max_views : int
        Show at most this many tilts, evenly spread.

    Returns
    -------
    pathlib.Path
    """
    from scipy.ndimage import gaussian_filter

    data = maps.to_numpy().astype(float)
    tilts = maps.tilts
    views = np.unique(np.linspace(0, len(tilts) - 1, min(max_views, len(tilts))).round().astype(int))
    n_el = data.shape[0]
    fig, axes = _subplots(n_el, len(views), figsize=(1.4 * len(views) + 0.8, 1.5 * n_el + 0.6), squeeze=False,
                             layout="constrained")
    for e, name in enumerate(maps.elements):
        shown = [gaussian_filter(data[e, t], smooth_px) if smooth_px else data[e, t] for t in views]
        vmax = max(float(np.percentile(np.stack(shown), 99.8)), 1e-12)
        for k, (t, img) in enumerate(zip(views, shown)):
            ax = axes[e, k]
            im = ax.imshow(img, cmap="inferno", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if e == 0:
                ax.set_title(f"{tilts[t]:+.0f}°", fontsize=8)
            if k == 0:
                ax.set_ylabel(f"{name}\n{data[e].sum() / len(tilts):.0f} cts/view", fontsize=8)
        _colourbar(fig, im, axes[e, :], _map_units(maps))
    scale, units = maps.pixel_size
    _scalebar(axes[-1, 0], _nice_length(data.shape[-1] * scale), units)
    smoothing = f"smoothed (Gaussian σ = {smooth_px:g} px) for display" if smooth_px else "unsmoothed"
    fig.suptitle(f"{maps.metadata.General.title} (pixel {scale:.3g} {units})\n{smoothing}; each element on its "
                 "own scale, 0 to its 99.8th percentile", fontsize=8)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------
# volumes


def _nice_length(span):
    """A round scale-bar length about a quarter of ``span``."""
    target = span / 4
    if target <= 0:
        return 1.0
    mag = 10 ** np.floor(np.log10(target))
    for m in (5, 2, 1):
        if m * mag <= target:
            return float(m * mag)
    return float(mag)


def _scalebar(ax, length, units, color="white"):
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    bar = AnchoredSizeBar(ax.transData, length, f"{length:g} {units}", "lower right", pad=0.3, color=color,
                          frameon=False, size_vertical=length / 12, fontproperties={"size": 7})
    ax.add_artist(bar)


def _colourbar(fig, im, axes, label):
    cb = fig.colorbar(im, ax=list(np.ravel(axes)), fraction=0.02, pad=0.01)
    cb.set_label(label, fontsize=6)
    cb.ax.tick_params(labelsize=6)
    return cb


def _map_units(maps):
    return "X-ray counts per pixel" if is_counts(maps.to_numpy()) else "map value per pixel"


def _volume_units(volume):
    """What a voxel of a reconstruction holds: counts per view per voxel for counts, else the maps' units."""
    quantity = volume.metadata.get_item("Signal.quantity", "")
    return quantity or "counts / view / voxel"


def _axis_values(volume):
    return {n: np.asarray(volume.axes_manager[n].axis, dtype=float) for n in "zyx"}


def _extent(h, v):
    """imshow extent for an image whose columns follow ``h`` and rows ``v`` (first row on top)."""
    dh = (h[1] - h[0]) / 2 if h.size > 1 else 0.5
    dv = (v[1] - v[0]) / 2 if v.size > 1 else 0.5
    return (h[0] - dh, h[-1] + dh, v[-1] + dv, v[0] - dv)


def _cut_index(values, position):
    return int(np.clip(np.argmin(np.abs(values - position)), 0, values.size - 1))


def _sections(volume, data, position, mode):
    """{plane: (image, horizontal axis, vertical axis, label)} for cuts or projections."""
    ax = _axis_values(volume)
    if mode == "mip":
        return {
            "xy": (data.max(0), "x", "y", "max over z"),
            "xz": (data.max(1), "x", "z", "max over y"),
            "yz": (data.max(2).T, "z", "y", "max over x"),
        }
    if position is None:
        iz, iy, ix = (n // 2 for n in data.shape)
    else:
        x, y, z = position
        iz, iy, ix = _cut_index(ax["z"], z), _cut_index(ax["y"], y), _cut_index(ax["x"], x)
    return {
        "xy": (data[iz], "x", "y", f"z = {ax['z'][iz]:.2f}"),
        "xz": (data[:, iy, :], "x", "z", f"y = {ax['y'][iy]:.2f}"),
        "yz": (data[:, :, ix].T, "z", "y", f"x = {ax['x'][ix]:.2f}"),
    }


def _volume_grid(volumes, path, position=None, mode="cuts", elements=None, title=None, cmap="inferno"):
    first = volumes[0][1]
    elements = list(first.elements) if elements is None else ([elements] if isinstance(elements, str) else
                                                               list(elements))
    scale, units = first.voxel_size
    n_cols = 3 * len(volumes)
    fig, axes = _subplots(len(elements), n_cols, figsize=(2.0 * n_cols + 0.8, 2.0 * len(elements) + 0.7),
                             squeeze=False, layout="constrained")
    for e, name in enumerate(elements):
        for s_i, (label, vol) in enumerate(volumes):
            data = vol.element(name).to_numpy()[0].astype(float)
            vals = _axis_values(vol)
            vmax = max(float(np.percentile(data.max(0) if mode == "mip" else data, 99.9)), 1e-12)
            for k, (plane, (img, h, v, where)) in enumerate(_sections(vol, data, position, mode).items()):
                ax = axes[e, 3 * s_i + k]
                im = ax.imshow(img, cmap=cmap, vmin=0, vmax=vmax, extent=_extent(vals[h], vals[v]),
                               interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel(f"{h} →", fontsize=7, labelpad=1)
                # rotated 90 degrees, "←" points down: the direction the axis grows
                ax.set_ylabel(f"← {v}" if k else f"{name}\n← {v}", fontsize=8 if not k else 7, labelpad=1)
                if e == 0:
                    ax.set_title(f"{label}{plane} ({where} {units})" if mode != "mip" else f"{label}{where}",
                                 fontsize=7)
                if k == 0 and s_i == 0:
                    span = vals["x"][-1] - vals["x"][0]
                    _scalebar(ax, _nice_length(span), units)
            _colourbar(fig, im, axes[e, 3 * s_i:3 * s_i + 3], f"{name} ({_volume_units(vol)})")
    where = "" if mode == "mip" else "; cuts through the box centre" if position is None else \
        f"; cuts through ({position[0]:.2f}, {position[1]:.2f}, {position[2]:.2f}) {units} from the box centre"
    fig.suptitle((title or "") + where + "\neach element on its own scale (0 to its 99.9th percentile)",
                 fontsize=8)
    return _save(fig, path)


def _method(volume):
    return volume.history[-1]["method"] if volume.history else "?"


def volume_cuts(volume, path, truth=None, position=None, elements=None):
    """Save orthogonal xy, xz and yz cuts of every element of a volume as PNG.

    Parameters
    ----------
    volume : ElementVolume
    path : str or Path
    truth : ElementVolume, optional
        Ground truth (simulations) shown beside, three more columns.
    position : None or (x, y, z)
        Point (nm, the volume's coordinates) the cuts go through, e.g. a
        particle's ``centre``; None: the box centre.
    elements : None, str or list of str
        Elements to show (rows); None: all.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.workflow import figures as plotting
    >>> vol = datasets.core_shell_phantom(size=32)
    >>> plotting.volume_cuts(vol, pathlib.Path(tempfile.mkdtemp()) / "cuts.png").suffix
    '.png'
    """
    sources = [("", volume)] + ([("truth ", truth)] if truth is not None else [])
    scale, units = volume.voxel_size
    return _volume_grid(sources, path, position=position, elements=elements,
                        title=f"{_method(volume)}: orthogonal cuts (voxel {scale:.3g} {units})")


orthogonal_cuts = volume_cuts


def max_projections(volume, path, elements=None, truth=None):
    """Save maximum-intensity projections along z, y and x of every element as PNG.

    Parameters
    ----------
    volume : ElementVolume
    path : str or Path
    elements : None, str or list of str
    truth : ElementVolume, optional
        Shown beside.

    Returns
    -------
    pathlib.Path
    """
    sources = [("", volume)] + ([("truth ", truth)] if truth is not None else [])
    scale, units = volume.voxel_size
    return _volume_grid(sources, path, mode="mip", elements=elements,
                        title=f"{_method(volume)}: maximum-intensity projections (voxel {scale:.3g} {units})")


def _rgb(channels):
    """(3, ...) non-negative arrays -> (..., 3) RGB in [0, 1], each channel scaled to its 99.5th percentile."""
    out = []
    for c in channels:
        top = float(np.percentile(c, 99.5)) if np.any(c > 0) else 1.0
        out.append(np.clip(c / max(top, 1e-12), 0, 1))
    return np.stack(out, axis=-1)


def rgb_overlay(volume, path, elements=None, position=None, mode="both"):
    """Save an RGB overlay of up to three elements (red, green, blue) as PNG.

    Parameters
    ----------
    volume : ElementVolume
    path : str or Path
    elements : None or list of str
        Up to three elements, in red, green, blue order; None: the last
        three of the volume (e.g. Se, S, Zn).
    position : None or (x, y, z)
        Point (nm) of the cuts; None: the box centre.
    mode : {"both", "cuts", "mip"}
        Orthogonal cuts, maximum-intensity projections, or a row of each.

    Returns
    -------
    pathlib.Path
    """
    els = list(volume.elements)
    if elements is None:
        elements = els[-3:]
    elements = [elements] if isinstance(elements, str) else list(elements)
    if not 1 <= len(elements) <= 3:
        raise InputError(f"An RGB overlay takes one to three elements, got {elements}.")
    for el in elements:
        if el not in els:
            raise InputError(f"Unknown element {el!r}: the volume holds {els}.")
    if mode not in ("both", "cuts", "mip"):
        raise InputError(f"mode must be 'both', 'cuts' or 'mip', got {mode!r}")
    modes = ["cuts", "mip"] if mode == "both" else [mode]
    data = [volume.element(el).to_numpy()[0].astype(float) for el in elements]
    while len(data) < 3:
        data.append(np.zeros_like(data[0]))
    vals = _axis_values(volume)
    scale, units = volume.voxel_size
    fig, axes = _subplots(len(modes), 3, figsize=(6.6, 2.3 * len(modes) + 0.5), squeeze=False)
    colours = ["red", "green", "blue"]
    for r, m in enumerate(modes):
        secs = [_sections(volume, d, position, m) for d in data]
        for k, plane in enumerate(("xy", "xz", "yz")):
            img_h_v = [s[plane] for s in secs]
            _, h, v, where = img_h_v[0]
            rgb = _rgb([i[0] for i in img_h_v])
            ax = axes[r, k]
            ax.imshow(rgb, extent=_extent(vals[h], vals[v]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{h} →", fontsize=7, labelpad=1)
            ax.set_ylabel(f"← {v}", fontsize=7, labelpad=1)
            ax.set_title(f"{plane}: {where}" + (f" {units}" if m == "cuts" else ""), fontsize=7)
            if k == 0:
                _scalebar(ax, _nice_length(vals["x"][-1] - vals["x"][0]), units)
    legend = ", ".join(f"{el} {c}" for el, c in zip(elements, colours))
    where = "box centre" if position is None else \
        f"({position[0]:.2f}, {position[1]:.2f}, {position[2]:.2f}) {units} from the box centre"
    fig.suptitle(f"{_method(volume)}: {legend}, each 0 to its 99.5th percentile\ncuts through {where}", fontsize=8)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------
# analysis


def fsc_plot(fsc, path, title=None):
    """Save FSC curves (one per element) with the 0.143 and 1/2-bit thresholds as PNG.

    Parameters
    ----------
    fsc : Signal1D
        From ``vol.fourier_shell_correlation`` or ``maps.fourier_shell_correlation``.
    path : str or Path
    title : str, optional

    Returns
    -------
    pathlib.Path
    """
    info = fsc.metadata.Tomography.FSC
    elements = list(fsc.metadata.Sample.elements)
    axis = fsc.axes_manager.signal_axes[0]
    f = np.asarray(axis.axis)
    units = info.units
    fig, ax = _subplots(figsize=(6.0, 3.8))
    import matplotlib

    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for e, el in enumerate(elements):
        c = colours[e % len(colours)]
        r1, r2 = info.resolution_0143[el], info.resolution_half_bit[el]
        lim = "≤" if info.nyquist_limited_0143[el] else ""
        ax.plot(f, fsc.data[e], color=c, lw=1.5, label=f"{el}: {lim}{r1:.2f} {units} (0.143), {r2:.2f} (½-bit)")
        if np.isfinite(r1) and r1 > 0:
            ax.plot([1 / r1], [0.143], "o", color=c, ms=4)
    ax.axhline(0.143, color="0.4", ls="--", lw=1, label="0.143")
    ax.plot(f, info.half_bit_threshold, color="0.2", ls=":", lw=1.2, label="½-bit")
    ax.axhline(0, color="0.8", lw=0.6)
    ax.set_xlim(0, f[-1])
    ax.set_ylim(-0.2, 1.05)
    ax.set_xlabel(f"spatial frequency ({axis.units})")
    ax.set_ylabel("FSC")
    top = ax.secondary_xaxis("top", functions=(lambda x: 1 / np.maximum(x, 1e-9), lambda x: 1 / np.maximum(x, 1e-9)))
    top.set_xlabel(f"resolution ({units})", fontsize=8)
    top.tick_params(labelsize=7)
    ticks = [t for t in (5, 2, 1, 0.7, 0.5, 0.4) if 1 / t <= f[-1]]
    top.set_xticks(ticks)
    ax.legend(fontsize=7, loc="upper right")
    split = fsc.metadata.get_item("Tomography.FSC.split", None)
    method = fsc.metadata.get_item("Tomography.FSC.method", None)
    extra = f" ({method}, {split} halves)" if split else ""
    ax.set_title(title or f"Fourier shell correlation{extra}", fontsize=9)
    return _save(fig, path)


def _particle_rows(shells, particle):
    if particle is None:
        return list(range(len(shells.labels)))
    if not 0 <= int(particle) < len(shells.labels):
        raise InputError(f"particle must be an index below {len(shells.labels)} (or None: all), got {particle!r}")
    return [int(particle)]


def shell_thickness_maps(shells, path, particle=None, elements=None, vmax=None):
    """Save shell-thickness maps (azimuth x elevation), a row per particle and a panel per element, as PNG.

    Absent directions (thickness below the presence limit) are hatched grey.

    Parameters
    ----------
    shells : ShellMaps
        From ``vol.shell_maps(...)``.
    path : str or Path
    particle : None or int
        None (default): every particle analysed, one row each; an index
        into the particles (0: the largest): that one only.
    elements : None or list of str
    vmax : None or float
        Top of the colour scale (nm); None: the largest thickness shown (one
        scale for all panels, so that thicknesses compare).

    Returns
    -------
    pathlib.Path
    """
    elements = shells.elements if elements is None else ([elements] if isinstance(elements, str) else elements)
    rows = _particle_rows(shells, particle)
    az = shells.thickness.axes_manager["azimuth"].axis
    el = shells.thickness.axes_manager["elevation"].axis
    daz, delv = az[1] - az[0], el[1] - el[0]
    extent = (az[0] - daz / 2, az[-1] + daz / 2, el[0] - delv / 2, el[-1] + delv / 2)
    maps = {(r, e): shells.thickness_map(e, r) for r in rows for e in elements}
    top = vmax or max(float(np.nanmax(m)) for m in maps.values()) or 1.0
    limit = shells.parameters.get("absent_below_nm", 0)
    n = len(elements)
    fig, axes = _subplots(len(rows), n, figsize=(3.3 * n + 0.9, 2.4 * len(rows) + 0.6), squeeze=False,
                             layout="constrained")
    for i, r in enumerate(rows):
        x, y, z = shells.origins[r]
        for k, name in enumerate(elements):
            m = maps[(r, name)]
            ax = axes[i, k]
            im = ax.imshow(np.ma.masked_less(m, limit), origin="lower", extent=extent, aspect="auto",
                           cmap="viridis", vmin=0, vmax=top, interpolation="nearest")
            gone = (m < limit).astype(float)
            if gone.any():
                ax.contourf(az, el, gone, levels=[0.5, 1.5], colors="0.6", hatches=["////"], alpha=0.9)
            ax.set_title(f"particle {shells.labels[r]}, {name}: absent {100 * shells.absent(name, r):.1f}%",
                         fontsize=8)
            ax.set_xticks([-180, -90, 0, 90, 180])
            ax.set_yticks([-90, -45, 0, 45, 90])
            ax.tick_params(labelsize=7)
            if i == len(rows) - 1:
                ax.set_xlabel("azimuth φ (deg, from +x towards +y)", fontsize=7)
            if k == 0:
                ax.set_ylabel(f"from ({x:.1f}, {y:.1f}, {z:.1f}) {shells.units}\nelevation θ (deg, towards +z)",
                              fontsize=7)
        _colourbar(fig, im, axes[i, :], f"thickness ({shells.units})")
    fig.suptitle(f"Element thickness along each direction from each particle's origin (coordinates from the box "
                 f"centre)\ngrey hatched: absent (under {limit:.2g} {shells.units}); one colour scale, 0 to "
                 f"{top:.3g} {shells.units}", fontsize=8)
    return _save(fig, path)


def shell_thickness_histogram(shells, path, particle=None, elements=None, bins=None):
    """Save histograms of the thickness over directions (solid-angle weighted), a panel per particle, as PNG.

    Parameters
    ----------
    shells : ShellMaps
    path : str or Path
    particle : None or int
        None (default): every particle analysed; an index: that one only.
    elements : None or list of str
    bins : None or int or sequence
        None: bins whole multiples of the ray step wide (thicknesses are
        multiples of it: other widths comb), about 30 over the range.

    Returns
    -------
    pathlib.Path
    """
    elements = shells.elements if elements is None else ([elements] if isinstance(elements, str) else elements)
    rows = _particle_rows(shells, particle)
    data = shells.thickness.data
    _, _, w = direction_grid(data.shape[-1], data.shape[-2])
    top = max(float(np.nanmax(shells.thickness_map(e, r))) for r in rows for e in elements)
    if bins is None:
        step = float(shells.parameters.get("ray_step_nm") or 0) or max(top / 120, 1e-6)
        width = step * max(1, int(round(top / 30 / step)))
        bins = np.arange(-step / 2, top + width + step / 2, width)  # edges between multiples of the step
    limit = shells.parameters.get("absent_below_nm", 0)
    fig, axes = _subplots(len(rows), 1, figsize=(5.5, 2.6 * len(rows) + 0.5), squeeze=False,
                             layout="constrained")
    for i, r in enumerate(rows):
        ax = axes[i, 0]
        for name in elements:
            m = shells.thickness_map(name, r)
            ax.hist(m.ravel(), bins=bins, weights=100 * w.ravel(), histtype="step", lw=1.5,
                    label=f"{name} (absent {100 * shells.absent(name, r):.1f}%)")
        ax.axvline(limit, color="0.4", ls="--", lw=1, label=f"presence limit {limit:.2g} {shells.units}")
        ax.set_ylabel("% of directions\n(solid angle)", fontsize=8)
        ax.legend(fontsize=7)
        ax.set_title(f"Particle {shells.labels[r]}: thickness over all directions", fontsize=9)
    axes[-1, 0].set_xlabel(f"thickness along the direction ({shells.units})")
    return _save(fig, path)
