"""Real data shipped with the package: the QD1 tilt series of Han et al. (2021)."""

from importlib import resources

import numpy as np

from hyperspy_edxtomo.alignment.transform import transform_counts
from hyperspy_edxtomo.signals import element_maps_from_array

__all__ = ["qd1", "QD1_CITATION"]

#: where QD1 comes from (Apache-2.0); stored in the signal's metadata too
QD1_CITATION = (
    "Y. Han et al., 'Deep learning STEM-EDX tomography of nanocrystals', Nature Machine Intelligence 3, "
    "267-277 (2021), doi:10.1038/s42256-020-00289-5; data from "
    "https://github.com/bispl-kaist/Deep-Learning-STEM-EDX-Tomography (Apache-2.0)"
)


def qd1(aligned=False, seed=0):
    """The real 13-tilt STEM-EDX series of one InP/ZnSe/ZnS quantum dot (QD1).

    X-ray counts of Se (core region), S (outer shell) and Zn (both shells),
    256 x 256 pixels of 0.189 nm, tilts -60 ... +60 deg in 10 deg steps; a few
    hundred to 2,400 counts per element and view, most pixels 0 or 1. The tilt
    axis runs along the rows. From the public release of Han et al. (2021),
    Apache-2.0 (:data:`QD1_CITATION`, ``datasets/data/QD1_NOTICE.txt``).

    Parameters
    ----------
    aligned : bool
        False (default): the views as acquired, not aligned (``maps.align()``
        aligns them). True: with the authors' manual pre-alignment applied
        (each view rotated by its own angle, then shifted, then masked), every
        count moved whole so that the maps stay integer counts.
    seed : int
        Seed of the whole-count moves of ``aligned=True``.

    Returns
    -------
    ElementMapTiltSeries
        Integer counts (float32) shaped (element, tilt, row, column), the
        tilts, elements and pixel size in its axes and metadata, the source
        in ``metadata.General.notes`` and ``metadata.Sample.citation``, the
        authors' alignment in ``metadata.Tomography.reference_alignment``
        (``rotation_deg``, ``shift_x_px``, ``shift_y_px`` per view).

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> maps = datasets.qd1()
    >>> maps.elements, maps.data.shape, float(maps.pixel_size[0])
    (['Se', 'S', 'Zn'], (3, 13, 256, 256), 0.189)
    >>> int(maps.data[0, 6].sum())  # Se counts at 0 deg
    807
    """
    with resources.files(__package__).joinpath("data", "qd1_element_maps.npz").open("rb") as f:
        z = dict(np.load(f))
    counts = z["counts"].astype(np.float32)
    rotation = z["ref_rotation_deg"].astype(float)
    sx, sy = z["ref_shift_x_px"].astype(float), z["ref_shift_y_px"].astype(float)
    if aligned:

        rng = np.random.default_rng(seed)
        mask = z["ref_mask"].astype(np.float32)
        # the authors' order: rotate counter-clockwise by their angle, shift, then mask
        counts = np.stack([np.stack([transform_counts(counts[e, t], -rotation[t], sy[t], sx[t], rng) * mask[t]
                                     for t in range(counts.shape[1])]) for e in range(counts.shape[0])])
    pixel_nm = float(str(z["pixel_size_nm"]))  # the stored float32's shortest decimal: 0.189, not 0.18899999
    title = "QD1 element maps" + (" (authors' manual alignment)" if aligned else "")
    maps = element_maps_from_array(counts, z["tilts_deg"].astype(float), [str(e) for e in z["elements"]],
                                   pixel_size_nm=pixel_nm, title=title)
    maps.metadata.set_item("General.notes", f"Real data, {QD1_CITATION}.")
    maps.metadata.set_item("Sample.citation", QD1_CITATION)
    maps.metadata.set_item("Sample.description", "InP/ZnSe/ZnS core-shell quantum dot (sQD1)")
    maps.metadata.set_item("Tomography.source_files", [str(f) for f in z["source_files"]])
    maps.metadata.set_item("Tomography.reference_alignment.rotation_deg", np.asarray(rotation, float))
    maps.metadata.set_item("Tomography.reference_alignment.shift_x_px", np.asarray(sx, float))
    maps.metadata.set_item("Tomography.reference_alignment.shift_y_px", np.asarray(sy, float))
    maps.metadata.set_item("Tomography.reference_alignment.applied", bool(aligned))
    return maps
