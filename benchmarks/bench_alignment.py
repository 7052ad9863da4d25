"""Alignment benchmark on QD1 (``../shared/data/qd1_element_maps.npz``): prints a table.

Rows: raw, the authors' manual alignment (``ref_*``, without their mask) and
every ``align`` method. Columns:

* ``centre rms px``: rms residual of the per-view particle centres (centre of
  mass of the smoothed, background-free summed counts) from a rigid body's
  path (``a + x0 cos + z0 sin`` across the axis, constant along it);
* ``held-out deviance``: Poisson deviance of held-out counts. The raw counts
  are split 50/50 (binomial count split); the alignment is estimated on the
  full data and applied to the fit half, which is binned 2x2 and
  reconstructed (SIRT, 50 iterations, every element); the re-projections are
  moved back to the raw detector frame (inverse transform) and compared with
  the raw held-out half (binned 2x2) in the central 192 x 192 pixels, the
  same pixels and counts for every row (lower is better);
* ``seconds``: time of the alignment estimate.

Usage: ``python benchmarks/bench_alignment.py``  (~2-4 min on 2 cores)
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

warnings.filterwarnings("ignore")
QD1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "qd1_element_maps.npz"


def centre_rms(stack, tilts):
    from hyperspy_edxtomo import alignment as al

    sm = al._background_free(stack, 3.0)
    cy, cx = al._com(sm)
    return al.rigid_path_fit(cy, cx, tilts)[2]


def manual_forward(img, d, t):
    img = ndimage.rotate(img, float(d["ref_rotation_deg"][t]), order=1, reshape=False, mode="constant")
    return ndimage.shift(img, (float(d["ref_shift_y_px"][t]), float(d["ref_shift_x_px"][t])), order=1, mode="constant")


def bin2(a):
    *lead, ny, nx = a.shape
    return a.reshape(*lead, ny // 2, 2, nx // 2, 2).sum((-3, -1))


def deviance(fit_aligned, held_raw, tilts, inverse, elements):
    """fit_aligned (el, t, y, x) full res; inverse(img_binned, t) -> raw frame (binned)."""
    import hyperspy_edxtomo as het
    from hyperspy_edxtomo.projector import Projector
    from hyperspy_edxtomo.solvers import poisson_deviance

    fb = bin2(fit_aligned)
    maps = het.element_maps_from_array(fb, tilts, elements)
    rec = maps.reconstruct("sirt", iterations=50, show_progressbar=False).to_numpy()
    P = Projector(tilts, n_x=fb.shape[-1])
    hb = bin2(held_raw)
    total = 0.0
    c = slice(8, fb.shape[-1] - 8)
    for e in range(len(elements)):
        mu = P.forward(np.ascontiguousarray(rec[e].transpose(1, 0, 2))).transpose(1, 0, 2)
        mu = np.stack([inverse(mu[t], t) for t in range(len(tilts))])
        total += poisson_deviance(hb[e, :, c, c], np.clip(mu[:, c, c], 1e-3, None))
    return total


def main():
    import hyperspy_edxtomo as het
    from hyperspy_edxtomo import alignment as al
    from hyperspy_edxtomo.solvers import count_split

    if not QD1.is_file():
        print(f"QD1 absent ({QD1}): nothing to do")
        return
    d = np.load(QD1)
    counts = d["counts"].astype(np.float32)
    tilts = d["tilts_deg"].astype(float)
    elements = [str(e) for e in d["elements"]]
    maps = het.element_maps_from_array(counts, tilts, elements)
    fit, held = count_split(counts, 0.5, seed=0)
    rows = []

    # raw
    ident = lambda img, t: img  # noqa: E731
    rows.append(["raw", centre_rms(counts.sum(0), tilts), deviance(fit, held, tilts, ident, elements), 0.0])

    # manual (authors' ref_*, without the mask)
    def fwd_all(a):
        return np.stack([np.stack([manual_forward(a[e, t], d, t) for t in range(a.shape[1])]) for e in range(a.shape[0])])

    def inv_manual(img, t):
        img = ndimage.shift(img, (-float(d["ref_shift_y_px"][t]) / 2, -float(d["ref_shift_x_px"][t]) / 2), order=1)
        return ndimage.rotate(img, -float(d["ref_rotation_deg"][t]), order=1, reshape=False)

    man = fwd_all(counts)
    rows.append(["manual (ref_*)", centre_rms(man.sum(0), tilts), deviance(fwd_all(fit), held, tilts, inv_manual,
                                                                          elements), 0.0])

    for method in ["com", "xcorr", "axis", "projection_matching", "auto"]:
        t0 = time.perf_counter()
        a = al.estimate_alignment(maps, method=method, show_progressbar=False)
        sec = time.perf_counter() - t0
        aligned = al.apply_alignment(maps, a).data
        fit_al = al.apply_alignment(het.element_maps_from_array(fit, tilts, elements), a).data
        sx, sy, rot = np.array(a["shift_x_px"]), np.array(a["shift_y_px"]), a["rotation_deg"]

        def inv(img, t, sx=sx, sy=sy, rot=rot):
            img = ndimage.shift(img, (-sy[t] / 2, -sx[t] / 2), order=1)
            return ndimage.rotate(img, rot, order=1, reshape=False) if rot else img

        label = "auto (default)" if method == "auto" else method
        rows.append([f"{label} rot={rot:+.2f}", centre_rms(aligned.sum(0), tilts),
                     deviance(fit_al, held, tilts, inv, elements), sec])

    header = ["alignment", "centre rms px", "held-out deviance", "seconds"]
    cells = [header] + [[r[0], f"{r[1]:.3f}", f"{r[2]:.1f}", f"{r[3]:.1f}"] for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(4)]
    print("\n## QD1 alignment (13 views, 0/1 counts; deviance: SIRT 50 of the fit half, binned 2x2)")
    for i, c in enumerate(cells):
        print(" | ".join(x.ljust(wi) for x, wi in zip(c, w)))
        if i == 0:
            print("-+-".join("-" * wi for wi in w))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
