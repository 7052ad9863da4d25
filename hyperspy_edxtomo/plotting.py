"""PNG figures with matplotlib (no screen needed)."""

import numpy as np


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    """Write ``fig`` to the PNG ``path`` (folders made as needed) and close it."""
    from pathlib import Path

    plt = _pyplot()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
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

    plt = _pyplot()
    data = maps.to_numpy().astype(float)
    tilts = maps.tilts
    views = np.unique(np.linspace(0, len(tilts) - 1, min(max_views, len(tilts))).round().astype(int))
    n_el = data.shape[0]
    fig, axes = plt.subplots(n_el, len(views), figsize=(1.4 * len(views), 1.5 * n_el + 0.4), squeeze=False)
    for e, name in enumerate(maps.elements):
        shown = [gaussian_filter(data[e, t], smooth_px) if smooth_px else data[e, t] for t in views]
        vmax = max(float(np.percentile(np.stack(shown), 99.8)), 1e-12)
        for k, (t, img) in enumerate(zip(views, shown)):
            ax = axes[e, k]
            ax.imshow(img, cmap="inferno", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if e == 0:
                ax.set_title(f"{tilts[t]:+.0f}°", fontsize=8)
            if k == 0:
                ax.set_ylabel(f"{name}\n{data[e].sum() / len(tilts):.0f} cts/view", fontsize=8)
    scale, units = maps.pixel_size
    fig.suptitle(f"{maps.metadata.General.title} (pixel {scale:.3g} {units})", fontsize=9)
    return _save(fig, path)


def volume_cuts(volume, path, truth=None):
    """Save central xy, xz and yz cuts of every element of a volume as PNG.

    Parameters
    ----------
    volume : ElementVolume
    path : str or Path
    truth : ElementVolume, optional
        Ground truth (simulations) shown in a second row per element.

    Returns
    -------
    pathlib.Path
    """
    plt = _pyplot()
    sources = [("", volume)] + ([("truth ", truth)] if truth is not None else [])
    elements = volume.elements
    n_cols = 3 * len(sources)
    fig, axes = plt.subplots(len(elements), n_cols, figsize=(1.6 * n_cols, 1.7 * len(elements) + 0.5), squeeze=False)
    for e, name in enumerate(elements):
        for s_i, (label, vol) in enumerate(sources):
            data = vol.element(name).to_numpy()[0]  # (z, y, x)
            nz, ny, nx = data.shape
            # xy: as the 0 deg view; xz: z down; yz: y (tilt axis) down, z across
            cuts = {"xy": data[nz // 2], "xz": data[:, ny // 2, :], "yz": data[:, :, nx // 2].T}
            vmax = max(float(np.percentile(data, 99.9)), 1e-12)
            for k, (plane, img) in enumerate(cuts.items()):
                ax = axes[e, 3 * s_i + k]
                ax.imshow(img, cmap="inferno", vmin=0, vmax=vmax)
                ax.set_xticks([])
                ax.set_yticks([])
                if e == 0:
                    ax.set_title(f"{label}{plane}", fontsize=8)
                if k == 0 and s_i == 0:
                    ax.set_ylabel(name, fontsize=9)
    scale, units = volume.voxel_size
    method = volume.history[-1]["method"] if volume.history else "?"
    fig.suptitle(f"{method} reconstruction (voxel {scale:.3g} {units})", fontsize=9)
    return _save(fig, path)
