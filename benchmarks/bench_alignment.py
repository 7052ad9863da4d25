"""Alignment benchmark on QD1 (``../shared/data/qd1_element_maps.npz``): prints a table.

Rows: raw, the authors' manual alignment (``ref_*``, without their mask) and
every ``align`` method. Columns:

* ``field centre rms px``: rms residual of the per-view centre of the whole
  field (centre of mass of the smoothed, background-free summed counts) from
  a rigid body's path (``a + x0 cos + z0 sin`` across the axis, constant
  along it);
* ``particle rms px``: the same rigid-path residual for each of the two whole
  particles in the field (tracked by a mean-shift centre of mass in a
  28-pixel disk, smoothed sigma 4); unlike the whole-field centre it is not
  biased by the third particle that is cut by the top edge of the field. Its
  own noise (estimated from two count-split halves) is printed below the table;
* ``pair midpoint rms px``: the same for the midpoint of the two particles
  (they move as one rigid body; the midpoint averages their centre noise);
* held-out Poisson deviances (lower is better). The raw counts are split
  50/50 (binomial count split); the alignment is estimated on all counts.

  - ``A (bilinear)``: the fit half is moved by bilinear interpolation (as the
    manual row), binned 2x2, reconstructed (SIRT 50, every element); the
    re-projections are moved back to the raw detector frame and compared with
    the raw held-out half (central 224 x 224 pixels: the same pixels and
    counts for every row). Bilinear interpolation blurs the views it rotates:
    a denoiser of the noisy fit half, which favours any rotation;
  - ``B (counts, SIRT)`` and ``C (counts, TV)``: no interpolation anywhere.
    Both halves are moved whole count by whole count (``transform_counts``),
    binned; SIRT 50 (B) or TV with ``lam=1`` (C) of the fit half is scored
    against the moved held-out half in the aligned frame (central pixels);
  - ``D (held-out views)``: whole counts moved, SIRT 50 of the even views
    predicts the odd views and the odd the even (prediction blurred by 1 px,
    the same for every row). A reconstruction from the same 13 views can fit
    a count split of them whatever the alignment; a view it has not seen is
    only predicted when the views agree on one object;
* ``seconds``: time of the alignment estimate.

Then: the rotation check (the direction of the line through the two particles
in each view against the authors' per-view rotation), simulated series with
known shifts and axis rotation (Poisson counts drawn after the move; recovery
errors), and etspy's real HAADF tilt series (``etspy.datasets.get_needle_data``),
where etspy's own alignment (``stack_register("PC")`` then
``tilt_align("CoM")``, and the aligned copy shipped with etspy) is the
reference: held-out views (SIRT of the even views, re-projected at the odd
tilts, relative rms error).

``validated``: the table of ``auto``'s validated chain against doing nothing
and every single method, on simulated scenes (``datasets.simulate_scene``:
dot, chain, rod_along, rod_across, edge_cut, entering; rotations 0, 3, 10
degrees; 200, 2000, 20000 counts per element and view; some with HAADF
reference images) and on QD1 (the authors' manual alignment as a check, not
used to tune anything). Protocol: the counts are split 50/50 (binomial); every
alignment (each method, and ``auto``, which splits its half again) is
estimated on the *fit* half only; each is scored by the held-out-view
criterion (:class:`~hyperspy_edxtomo.alignment.criterion.HeldOutCriterion`: SIRT 100 of
the fit half's other views, binned to 64 px, predicting each view between the
extreme tilts) against the *held* half, which no alignment saw, on the pixels
every alignment of the row predicts. Columns: deviance relative to doing
nothing (%, negative is better), the true correction ("truth"), ``auto``'s gap
to the best single method (% of its deviance), the share of the truth's gain
that ``auto`` reaches, ``auto``'s rotation and shift errors against the truth,
and its run time. Simulations are scored on the counts summed over elements,
QD1 per element. ``--quick``: a smaller grid.

Usage: ``nice python benchmarks/bench_alignment.py [qd1] [simulated] [etspy] [validated [--quick]] [--data DIR]``
(``--data``: the folder holding ``qd1_element_maps.npz``, default ``../shared/data``)
(~15 min on 2 cores for the first three, ~20 min for ``validated``)
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
    from hyperspy_edxtomo.alignment.estimators import centre_of_mass, rigid_path_fit
    from hyperspy_edxtomo.alignment.views import background_free

    sm = background_free(stack, 3.0)
    cy, cx = centre_of_mass(sm)
    return rigid_path_fit(cy, cx, tilts)[2]


def manual_forward(img, d, t):
    img = ndimage.rotate(img, float(d["ref_rotation_deg"][t]), order=1, reshape=False, mode="constant")
    return ndimage.shift(img, (float(d["ref_shift_y_px"][t]), float(d["ref_shift_x_px"][t])), order=1, mode="constant")


def bin2(a):
    *lead, ny, nx = a.shape
    return a.reshape(*lead, ny // 2, 2, nx // 2, 2).sum((-3, -1))


def deviance(fit_aligned, held_raw, tilts, inverse, elements):
    """fit_aligned (el, t, y, x) full res; inverse(img_binned, t) -> raw frame (binned)."""
    import hyperspy_edxtomo as het
    from hyperspy_edxtomo.base.counts import poisson_deviance
    from hyperspy_edxtomo.reconstruction.projector import Projector

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


def deviance_counts(fit, held, tilts, move, elements, method="sirt", blur=0.0, **params):
    """Held-out deviance with no interpolation anywhere: both halves (el, t, y, x)
    are moved whole count by whole count (``move(view, t, rng)``), binned 2x2;
    SIRT 50 of the fit half, re-projected, scored against the moved held-out
    half in the aligned frame (central pixels). ``method`` and ``params``: the
    reconstruction (SIRT 50 by default)."""
    import hyperspy_edxtomo as het
    from hyperspy_edxtomo.base.counts import poisson_deviance
    from hyperspy_edxtomo.reconstruction.projector import Projector

    rng_f, rng_h = np.random.default_rng(1), np.random.default_rng(2)
    n = len(tilts)
    fm = np.stack([np.stack([move(fit[e, t], t, rng_f) for t in range(n)]) for e in range(len(elements))])
    hm = np.stack([np.stack([move(held[e, t], t, rng_h) for t in range(n)]) for e in range(len(elements))])
    fb, hb = bin2(fm), bin2(hm)
    params = params or ({"iterations": 50} if method == "sirt" else {})
    rec = het.element_maps_from_array(fb, tilts, elements).reconstruct(method, show_progressbar=False,
                                                                       **params).to_numpy()
    P = Projector(tilts, n_x=fb.shape[-1])
    c = slice(8, fb.shape[-1] - 8)
    total = 0.0
    for e in range(len(elements)):
        mu = P.forward(np.ascontiguousarray(rec[e].transpose(1, 0, 2))).transpose(1, 0, 2)
        if blur:
            mu = ndimage.gaussian_filter(mu, (0, blur, blur))
        total += poisson_deviance(hb[e, :, c, c], np.clip(mu[:, c, c], 1e-3, None))
    return total


def deviance_views(counts, tilts, move, elements, iterations=50, blur=1.0):
    """Held-out *views*: the counts (el, t, y, x) are moved whole count by
    whole count (``move(view, t, rng)``) and binned 2x2; SIRT of the even views
    predicts the odd views (and the odd the even), scored by the Poisson
    deviance in the aligned frame (central pixels; the prediction is blurred
    by ``blur`` binned pixels, the same for every row). Unlike a count split
    of the same views, which a reconstruction from 13 views can fit whatever
    the alignment, a view the reconstruction has not seen is only predicted
    when the views agree on one object."""
    import hyperspy_edxtomo as het
    from hyperspy_edxtomo.base.counts import poisson_deviance
    from hyperspy_edxtomo.reconstruction.projector import Projector

    rng = np.random.default_rng(1)
    n = len(tilts)
    moved = bin2(np.stack([np.stack([move(counts[e, t], t, rng) for t in range(n)]) for e in range(len(elements))]))
    c = slice(8, moved.shape[-1] - 8)
    total = 0.0
    for fit_idx in (np.arange(0, n, 2), np.arange(1, n, 2)):
        test = np.setdiff1d(np.arange(n), fit_idx)
        rec = het.element_maps_from_array(moved[:, fit_idx], tilts[fit_idx], elements).reconstruct(
            "sirt", iterations=iterations, show_progressbar=False).to_numpy()
        P = Projector(tilts[test], n_x=moved.shape[-1])
        for e in range(len(elements)):
            mu = P.forward(np.ascontiguousarray(rec[e].transpose(1, 0, 2))).transpose(1, 0, 2)
            if blur:
                mu = ndimage.gaussian_filter(mu, (0, blur, blur))
            total += poisson_deviance(moved[e][test][:, c, c], np.clip(mu[:, c, c], 1e-3, None))
    return total


def particle_centres(stack, sigma=4.0, radius=28, n_particles=2, iters=30):
    """(particle, tilt, 2) centres (row, column) of the brightest whole particles of each view.

    Seeds are the peaks of the mean (smoothed, background-free) view, at least
    ``radius`` from the border and ``2 radius`` apart; in each view the centre
    of mass in a disk of ``radius`` about the seed is iterated (mean shift).
    """
    n, ny, nx = stack.shape
    w = max(1, min(ny, nx) // 10)
    border = np.ones((ny, nx), bool)
    border[w:-w, w:-w] = False
    sm = np.stack([ndimage.gaussian_filter(v.astype(float), sigma) for v in stack])
    sm = np.stack([np.clip(v - np.median(v[border]), 0, None) for v in sm])
    m = sm.mean(0)
    m[:radius], m[-radius:], m[:, :radius], m[:, -radius:] = 0, 0, 0, 0
    yy, xx = np.mgrid[:ny, :nx]
    seeds = []
    for _ in range(n_particles):
        y, x = np.unravel_index(np.argmax(m), m.shape)
        seeds.append((float(y), float(x)))
        m[(yy - y) ** 2 + (xx - x) ** 2 < (2 * radius) ** 2] = 0
    seeds.sort()
    out = np.zeros((len(seeds), n, 2))
    for p, (y0, x0) in enumerate(seeds):
        for t in range(n):
            cy, cx = y0, x0
            for _ in range(iters):
                wgt = sm[t] * ((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2)
                ncy, ncx = (wgt * yy).sum() / wgt.sum(), (wgt * xx).sum() / wgt.sum()
                done = abs(ncy - cy) < 1e-3 and abs(ncx - cx) < 1e-3
                cy, cx = ncy, ncx
                if done:
                    break
            out[p, t] = cy, cx
    return out


def particle_rms(stack, tilts):
    """Rigid-path rms of each whole particle, then of their midpoint (the pair is one rigid body)."""
    from hyperspy_edxtomo.alignment.estimators import rigid_path_fit

    c = particle_centres(stack)
    c = np.concatenate([c, c.mean(0, keepdims=True)])
    return [rigid_path_fit(c[p, :, 0], c[p, :, 1], tilts)[2] for p in range(len(c))]


def print_table(title, header, rows):
    cells = [header] + rows
    w = [max(len(c[i]) for c in cells) for i in range(len(header))]
    print(f"\n## {title}")
    for i, c in enumerate(cells):
        print(" | ".join(x.ljust(wi) for x, wi in zip(c, w)))
        if i == 0:
            print("-+-".join("-" * wi for wi in w))
    sys.stdout.flush()


def qd1():
    import hyperspy_edxtomo as het
    from hyperspy_edxtomo import alignment as al
    from hyperspy_edxtomo.alignment.transform import transform_counts
    from hyperspy_edxtomo.base.counts import count_split

    d = np.load(QD1)
    counts = d["counts"].astype(np.float32)
    tilts = d["tilts_deg"].astype(float)
    elements = [str(e) for e in d["elements"]]
    maps = het.element_maps_from_array(counts, tilts, elements)
    fit, held = count_split(counts, 0.5, seed=0)
    rows, stacks = [], {}

    def row(label, aligned_sum, dev, move, sec):
        p = particle_rms(aligned_sum, tilts)
        unbiased = [deviance_counts(fit, held, tilts, move, elements),
                    deviance_counts(fit, held, tilts, move, elements, method="tv", lam=1.0),
                    deviance_views(counts, tilts, move, elements)]
        rows.append([label, f"{centre_rms(aligned_sum, tilts):.3f}", " / ".join(f"{v:.2f}" for v in p[:2]),
                     f"{p[2]:.2f}", f"{dev:.0f}"] + [f"{v:.0f}" for v in unbiased] + [f"{sec:.1f}"])

    ident = lambda img, t: img  # noqa: E731
    keep = lambda img, t, rng: np.asarray(img, np.float32)  # noqa: E731
    row("raw", counts.sum(0), deviance(fit, held, tilts, ident, elements), keep, 0.0)

    def fwd_all(a):
        return np.stack([np.stack([manual_forward(a[e, t], d, t) for t in range(a.shape[1])]) for e in range(a.shape[0])])

    def inv_manual(img, t):
        img = ndimage.shift(img, (-float(d["ref_shift_y_px"][t]) / 2, -float(d["ref_shift_x_px"][t]) / 2), order=1)
        return ndimage.rotate(img, -float(d["ref_rotation_deg"][t]), order=1, reshape=False)

    def move_manual(img, t, rng):
        return transform_counts(img, -float(d["ref_rotation_deg"][t]), float(d["ref_shift_y_px"][t]),
                                   float(d["ref_shift_x_px"][t]), rng)

    man = fwd_all(counts).sum(0)
    stacks["manual"] = man
    row("manual (ref_*, per-view rot +5..+10 ccw)", man, deviance(fwd_all(fit), held, tilts, inv_manual, elements),
        move_manual, 0.0)

    alignments = {}
    fit_maps = het.element_maps_from_array(fit, tilts, elements)
    # "auto, rotation=+2.6": the estimate before the background was removed above its noise, for comparison
    for method in ["com", "xcorr", "axis", "projection_matching", "auto", "auto, rotation=+2.6"]:
        t0 = time.perf_counter()
        fixed = {"rotation": 2.6} if method.endswith("rotation=+2.6") else {}
        a = al.estimate_alignment(maps, method=method.split(",")[0], show_progressbar=False, **fixed)
        sec = time.perf_counter() - t0
        alignments[method] = a
        aligned = np.asarray(al.apply_alignment(maps, a).data)
        stacks[method] = aligned.sum(0)
        # bilinear, as the manual row: the rows compare alignments, not resamplers
        fit_al = al.apply_alignment(fit_maps, a, resample="bilinear").data
        sx, sy, rot = np.array(a["shift_x_px"]), np.array(a["shift_y_px"]), a["rotation_deg"]

        def inv(img, t, sx=sx, sy=sy, rot=rot):
            img = ndimage.shift(img, (-sy[t] / 2, -sx[t] / 2), order=1)
            return ndimage.rotate(img, rot, order=1, reshape=False) if rot else img

        def move(img, t, rng, sx=sx, sy=sy, rot=rot):
            return transform_counts(img, rot, sy[t], sx[t], rng)

        label = "auto (default)" if method == "auto" else method
        se = a.get("rotation_se_deg")
        label += f" rot={rot:+.2f}" + (f" (se {se:.2f})" if se is not None else "")
        row(label, aligned.sum(0), deviance(fit_al, held, tilts, inv, elements), move, sec)

    print_table("QD1 alignment (13 views, 0/1 counts; held-out deviances A-D, see the docstring; lower is better)",
                ["alignment", "field centre rms px", "particle rms px (upper / lower)", "pair midpoint rms px",
                 "deviance A (bilinear)", "B (counts, SIRT)", "C (counts, TV)", "D (held-out views)", "seconds"],
                rows)

    # the noise of the particle centres themselves: two count-split halves of the auto-aligned series
    a = alignments["auto"]
    c1 = particle_centres(np.asarray(al.apply_alignment(het.element_maps_from_array(fit, tilts, elements), a).data).sum(0))
    c2 = particle_centres(np.asarray(al.apply_alignment(het.element_maps_from_array(held, tilts, elements), a).data).sum(0))
    c1, c2 = (np.concatenate([c, c.mean(0, keepdims=True)]) for c in (c1, c2))
    sd = np.sqrt(np.mean((c1 - c2) ** 2, axis=1) / 4)  # per coordinate, at the full data's counts
    th = np.deg2rad(tilts)
    dof = np.sqrt(2 - 4 / len(tilts))  # rms residual of pure noise after the 4-parameter rigid fit
    print("particle-centre noise (count-split halves, full counts), px per coordinate (row, column): "
          + "; ".join(f"{('upper', 'lower', 'midpoint')[p]}: {sd[p, 0]:.2f}, {sd[p, 1]:.2f}" for p in range(len(sd)))
          + "; a perfect alignment would still show about "
          + " / ".join(f"{dof * np.sqrt(np.mean(sd[p] ** 2)):.2f}" for p in range(len(sd))) + " px rms (upper / lower / midpoint; halves carry more than half the noise of the full data "
          "for this non-linear tracker, so these are upper bounds)")

    # rotation: the authors' per-view rotation against the direction of the line through the two particles
    c = particle_centres(stacks["com"])
    pair = np.rad2deg(np.arctan2(c[1, :, 1] - c[0, :, 1], c[1, :, 0] - c[0, :, 0]))  # deg from the rows' direction
    cm = particle_centres(stacks["manual"])
    pair_m = np.rad2deg(np.arctan2(cm[1, :, 1] - cm[0, :, 1], cm[1, :, 0] - cm[0, :, 0]))
    ref = np.asarray(d["ref_rotation_deg"], float)
    mirrored = het.element_maps_from_array(counts[:, ::-1], -tilts[::-1], elements)
    rot_m = al.estimate_alignment(mirrored, method="axis", show_progressbar=False)["rotation_deg"]
    rrows = [[f"{t:+.0f}", f"{r:+.1f}", f"{p:+.1f}", f"{q:+.1f}"] for t, r, p, q in zip(tilts, ref, pair, pair_m)]
    print_table("QD1 rotation check (degrees; pair = line through the two particle centres, "
                "measured from the rows' direction)",
                ["tilt", "authors' rotation (ccw)", "pair direction, raw", "pair direction after manual"], rrows)
    x = np.stack([np.cos(th), np.sin(th), np.ones_like(th)], 1)
    print(f"correlation(authors' rotation, raw pair direction) = {np.corrcoef(ref, pair)[0, 1]:+.2f}; "
          f"mean pair direction raw {pair.mean():+.1f}, after the manual alignment {pair_m.mean():+.1f}; "
          f"pair direction fitted by a rigid pair (a + b cos + c sin) leaves {np.std(pair - x @ np.linalg.lstsq(x, pair, rcond=None)[0]):.1f} deg rms; "
          f"axis estimate {alignments['axis']['rotation_deg']:+.2f} deg, with the tilt sign mirrored {rot_m:+.2f} deg")


def simulated(seeds=(0, 1, 2, 3)):
    import hyperspy_edxtomo as het
    from hyperspy_edxtomo import alignment as al
    from hyperspy_edxtomo import datasets

    ph = datasets.core_shell_phantom(size=48, seed=1, eccentricity=0.6)
    rows = []
    # 200000 and 20000 counts per element per view; the real-data dose (Se 1500, S 800, Zn 2400), without and with
    # HAADF reference images recorded beside the maps (as EDX tomography acquisitions do)
    for dose, snr in ((200000, None), (20000, None), (None, None), (None, 100), (None, 300)):
        rows += _simulated_rows(het, al, datasets, ph, dose, seeds, haadf_snr=snr)
    print_table(f"Simulated (core-shell phantom, 64 px, 13 tilts, shifts uniform +-3 px, Poisson counts drawn after "
                f"the move; worst of {len(seeds)} seeds; targets 0.3 px and 0.5 deg)",
                ["counts per view", "method", "true rotation deg", "rms error across px", "rms error along px",
                 "rotation error deg", "rotation se deg (mean)", "seconds"], rows)


def _simulated_rows(het, al, datasets, ph, dose, seeds, haadf_snr=None):
    """Poisson counts drawn after moving the expected maps: integer views, as measured.
    With ``haadf_snr``, the series also carries HAADF reference images (the moved
    total density plus Gaussian noise, peak signal / noise = ``haadf_snr``),
    which ``align`` estimates on."""
    from hyperspy_edxtomo.alignment.transform import transform_view

    maps0 = datasets.simulate_element_maps(ph, counts_per_tilt=1e7, seed=0)
    expected = maps0.to_numpy().astype(np.float64)
    doses = {"Se": 1500, "S": 800, "Zn": 2400} if dose is None else dict.fromkeys(maps0.elements, dose)
    per_element = np.array([doses.get(e, 1000) for e in maps0.elements], float)
    expected = expected / expected.sum(axis=(2, 3), keepdims=True) * per_element[:, None, None, None]
    expected = np.pad(expected, ((0, 0), (0, 0), (8, 8), (8, 8)))
    tilts, elements = maps0.tilts, maps0.elements
    th = np.deg2rad(tilts)
    A = np.stack([np.cos(th), np.sin(th)], 1)
    rows = []
    for rotation in (0.0, -2.0):
        for method in ["com", "xcorr", "axis", "projection_matching", "auto"]:
            if rotation and method in ("com", "xcorr", "projection_matching"):
                continue
            ex_all, ey_all, er_all, se_all, secs = [], [], [], [], []
            for seed in seeds:
                rng = np.random.default_rng(seed + 3)
                lam, sx, sy = datasets.misalign(expected, rotation_deg=rotation, seed=rng)
                obs = rng.poisson(lam).astype(np.float32)
                maps = het.element_maps_from_array(obs, tilts, elements)
                if haadf_snr:
                    import hyperspy.api as hs

                    dens = lam.sum(0)
                    img = dens / dens.max() * haadf_snr + rng.normal(0, 1, dens.shape)
                    maps.metadata.set_item("Tomography.reference_images", hs.signals.Signal2D(img.astype(np.float32)))
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    a = al.estimate_alignment(maps, method=method, show_progressbar=False)
                secs.append(time.perf_counter() - t0)
                er_all.append(a["rotation_deg"] - rotation)
                if a.get("rotation_se_deg") is not None:
                    se_all.append(a["rotation_se_deg"])
                # the ideal shifts once the views are un-rotated by the estimated rotation: where a blob at
                # the centre, shifted by (sy, sx), lands after that rotation (= (sy, sx) without one)
                ry, rx = sy.copy(), sx.copy()
                if a["rotation_deg"]:
                    ny, nx = expected.shape[2:]
                    yy, xx = np.mgrid[:ny, :nx]
                    for t in range(len(sx)):
                        blob = np.exp(-((yy - (ny - 1) / 2 - sy[t]) ** 2 + (xx - (nx - 1) / 2 - sx[t]) ** 2) / 18)
                        moved = transform_view(blob, a["rotation_deg"], 0, 0)
                        ry[t] = (moved * yy).sum() / moved.sum() - (ny - 1) / 2
                        rx[t] = (moved * xx).sum() / moved.sum() - (nx - 1) / 2
                ex = np.asarray(a["shift_x_px"]) + rx
                ey = np.asarray(a["shift_y_px"]) + ry
                ex = ex - A @ np.linalg.lstsq(A, ex, rcond=None)[0]  # an invisible rigid move of the object
                ey = ey - ey.mean()
                ex_all.append(np.sqrt(np.mean(ex**2)))
                ey_all.append(np.sqrt(np.mean(ey**2)))
            se = f"{np.mean(se_all):.2f}" if se_all else "-"
            label = f"{expected.sum() / expected.shape[1]:.0f}" + (f" + HAADF (SNR {haadf_snr})" if haadf_snr else "")
            rows.append([label, method, f"{rotation:+.1f}", f"{max(ex_all):.3f}",
                         f"{max(ey_all):.3f}", f"{max(np.abs(er_all)):.3f}", se, f"{np.mean(secs):.1f}"])
    return rows


def etspy_comparison():
    try:
        import etspy.datasets as eds
    except ImportError as err:  # etspy is a benchmark-only extra
        print(f"\n## etspy comparison skipped: {err}")
        return
    import hyperspy_edxtomo as het
    from hyperspy_edxtomo import alignment as al
    from hyperspy_edxtomo.reconstruction.projector import Projector

    raw_s = eds.get_needle_data(False)
    tilts = np.asarray(raw_s.tilts.data, float).ravel()
    # etspy's tilt axis runs along the columns (horizontal); ours along the rows: transpose every view
    raw = np.asarray(raw_s.data, np.float32).transpose(0, 2, 1)
    even, odd = np.arange(0, len(tilts), 2), np.arange(1, len(tilts), 2)

    def held_out_error(views):
        vb = bin2(views.astype(np.float64))
        maps = het.element_maps_from_array(vb[None, even], tilts[even], ["Au"])
        rec = maps.reconstruct("sirt", iterations=50, show_progressbar=False).to_numpy()[0]
        P = Projector(tilts[odd], n_x=vb.shape[-1])
        mu = P.forward(np.ascontiguousarray(rec.transpose(1, 0, 2), np.float32)).transpose(1, 0, 2)
        c = slice(8, vb.shape[-1] - 8)
        v = vb[odd][:, c, c]
        return float(np.sqrt(np.sum((mu[:, c, c] - v) ** 2) / np.sum(v**2)))

    rows = [["raw", "", f"{held_out_error(raw):.4f}", "0.0"]]
    t0 = time.perf_counter()
    ets = raw_s.stack_register("PC").tilt_align("CoM")
    sec = time.perf_counter() - t0
    rows.append(["etspy stack_register('PC') + tilt_align('CoM')",
                 f"{float(ets.metadata.Tomography.tiltaxis):+.2f}",
                 f"{held_out_error(np.asarray(ets.data, np.float32).transpose(0, 2, 1)):.4f}", f"{sec:.1f}"])
    stored = eds.get_needle_data(True)
    rows.append(["etspy's shipped aligned copy (HAADF_Aligned.hspy)",
                 f"{float(stored.metadata.Tomography.tiltaxis):+.2f}",
                 f"{held_out_error(np.asarray(stored.data, np.float32).transpose(0, 2, 1)):.4f}", ""])
    maps = het.element_maps_from_array(raw[None], tilts, ["Au"])
    for method in ["com", "xcorr", "axis", "auto"]:
        t0 = time.perf_counter()
        a = al.estimate_alignment(maps, method=method, show_progressbar=False)
        sec = time.perf_counter() - t0
        views = np.asarray(al.apply_alignment(maps, a).data)[0]
        label = "auto (default)" if method == "auto" else method
        rows.append([label, f"{a['rotation_deg']:+.2f}", f"{held_out_error(views):.4f}", f"{sec:.1f}"])
    print_table("etspy needle HAADF (77 views, 256 px; SIRT 50 of the even views binned 2x2, relative rms error of "
                "the odd views; lower is better)", ["alignment", "rotation deg", "held-out rel. error", "seconds"],
                rows)


# ---------------------------------------------------------------------------------
# validated: auto against doing nothing and every single method, on data no alignment saw


SINGLE = ["com", "xcorr", "axis", "projection_matching"]


def _losses(crit, candidates):
    """{label: held-out deviance} on the pixels every candidate ``(rotation, shifts_y, shifts_x)`` predicts."""
    preds = {k: crit.predict(*v) for k, v in candidates.items()}
    mask = np.logical_and.reduce([p.valid for p in preds.values()])
    return {k: float(crit.fold_losses(p, mask).sum()) for k, p in preds.items()}


def _ideal(sx, sy, rot, shape):
    """Shifts that undo a misalignment (rotate by ``rot`` about the centre, then shift by ``(sy, sx)``)
    once the views are turned back by ``rot``: ``-M^T s`` with the rotation matrix of ``transform_view``."""
    from hyperspy_edxtomo.alignment.transform import rotation_matrix

    o = np.stack([sy, sx], 1) @ rotation_matrix(rot)
    return -o[:, 0], -o[:, 1]


def _shift_error(a, sx, sy, tilts, shape):
    """rms error of the shifts (across, along) against the ideal ones for the estimated rotation, after
    removing the moves of the object that projections cannot see (``x0 cos + z0 sin`` across, a constant along)."""
    iy, ix = _ideal(sx, sy, a["rotation_deg"], shape)
    ex, ey = np.asarray(a["shift_x_px"]) - ix, np.asarray(a["shift_y_px"]) - iy
    th = np.deg2rad(tilts)
    A = np.stack([np.cos(th), np.sin(th)], 1)
    ex = ex - A @ np.linalg.lstsq(A, ex, rcond=None)[0]
    return float(np.sqrt(np.mean(ex**2))), float(np.sqrt(np.mean((ey - ey.mean()) ** 2)))


def _validated_scene(scene, rot, counts_per_tilt, snr, seed=1):
    import hyperspy_edxtomo as het
    from hyperspy_edxtomo import alignment as al
    from hyperspy_edxtomo import datasets
    from hyperspy_edxtomo.base.counts import count_split

    maps = datasets.simulate_scene(scene, size=64, counts_per_tilt=counts_per_tilt, rotation_deg=rot, max_shift_px=3,
                                   haadf_snr=snr, seed=seed)
    tilts, counts = maps.tilts, maps.to_numpy()
    fit, held = count_split(counts, 0.5, seed=seed + 100)
    fit_maps = het.element_maps_from_array(fit, tilts, maps.elements)
    if snr:
        fit_maps.metadata.set_item("Tomography.reference_images", maps.reference_images)
    mis = maps.metadata.Simulation.misalignment
    sx, sy = np.asarray(mis.shift_x_px), np.asarray(mis.shift_y_px)
    n = len(tilts)
    cands = {"none": (0.0, np.zeros(n), np.zeros(n))}
    res, secs = {}, {}
    for m in SINGLE + ["auto"]:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = al.estimate_alignment(fit_maps, method=m, show_progressbar=False)
        secs[m] = time.perf_counter() - t0
        res[m] = a
        cands[m] = (a["rotation_deg"], np.asarray(a["shift_y_px"]), np.asarray(a["shift_x_px"]))
    iy, ix = _ideal(sx, sy, rot, counts.shape[2:])
    cands["truth"] = (rot, iy, ix)
    crit = al.HeldOutCriterion(fit.sum(0), tilts, targets=held.sum(0), bin_to=64)
    d = _losses(crit, cands)
    rel = {k: 100 * (v / d["none"] - 1) for k, v in d.items()}
    best = min(SINGLE, key=lambda k: d[k])
    gap = 100 * (d["auto"] / d[best] - 1)
    gain_truth = d["none"] - d["truth"]
    share = (d["none"] - d["auto"]) / gain_truth if gain_truth > 0 else float("nan")
    a = res["auto"]
    ex, ey = _shift_error(a, sx, sy, tilts, counts.shape[2:])
    row = [scene, f"{rot:g}", f"{counts_per_tilt:g}", f"{snr:g}" if snr else "-"]
    row += [f"{rel[k]:+.2f}" for k in SINGLE + ["truth", "auto"]]
    row += [f"{gap:+.2f} ({best})", f"{share:.2f}", f"{a['rotation_deg']:+.1f} ({a['rotation_deg'] - rot:+.1f})",
            f"{max(ex, ey):.2f}", f"{secs['auto']:.0f}"]
    return row, rel, gap


def validated(quick=False):
    rows, worst_none, worst_gap = [], -np.inf, -np.inf
    scenes = ["dot", "chain", "rod_along", "rod_across", "edge_cut", "entering"]
    grid = [(sc, r, 2000, None) for sc in scenes for r in (0, 3, 10)]
    grid += [(sc, 3, c, None) for sc in scenes for c in (200, 20000)]
    grid += [(sc, 10, 200, 20) for sc in ("dot", "chain", "entering")]
    if quick:
        grid = [(sc, r, 2000, None) for sc in scenes for r in (0, 10)] + [("chain", 10, 200, 20)]
    for sc, r, c, snr in grid:
        row, rel, gap = _validated_scene(sc, r, c, snr)
        rows.append(row)
        worst_none, worst_gap = max(worst_none, rel["auto"]), max(worst_gap, gap)
        print(" | ".join(row))
        sys.stdout.flush()
    print_table("Validated alignment on simulated scenes (64 px, 13 tilts, shifts +-3 px; estimated on one count-split "
                "half, scored on the other; held-out deviance relative to no alignment, %, lower is better)",
                ["scene", "rot deg", "counts/el/view", "HAADF SNR"] + SINGLE + ["truth", "auto",
                 "auto - best single % (best)", "share of truth's gain", "auto rot deg (err)", "auto shift err px",
                 "auto s"], rows)
    print(f"worst auto against no alignment: {worst_none:+.2f} % (positive would be worse); worst auto against the "
          f"best single method: {worst_gap:+.2f} %")


def qd1_validated():
    import hyperspy_edxtomo as het
    from hyperspy_edxtomo import alignment as al
    from hyperspy_edxtomo.base.counts import count_split

    d = np.load(QD1)
    counts = d["counts"].astype(np.float32)
    tilts = d["tilts_deg"].astype(float)
    elements = [str(e) for e in d["elements"]]
    fit, held = count_split(counts, 0.5, seed=0)
    fit_maps = het.element_maps_from_array(fit, tilts, elements)
    n = len(tilts)
    # the authors' manual alignment: turn each view counter-clockwise by ref_rotation_deg, then shift
    cands = {"none": (0.0, np.zeros(n), np.zeros(n)),
             "manual (authors, per-view rotation)": (-np.asarray(d["ref_rotation_deg"], float),
                                                     np.asarray(d["ref_shift_y_px"], float),
                                                     np.asarray(d["ref_shift_x_px"], float))}
    secs, rots = {}, {}
    for m in SINGLE + ["auto"]:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = al.estimate_alignment(fit_maps, method=m, show_progressbar=False)
        secs[m], rots[m] = time.perf_counter() - t0, a["rotation_deg"]
        cands[m] = (a["rotation_deg"], np.asarray(a["shift_y_px"]), np.asarray(a["shift_x_px"]))
        if m == "auto":
            v = a["validation"]
            stages = "; ".join(f"{st['stage']}: {'accepted' if st['accepted'] else 'kept'}" for st in v["stages"])
    crit = al.HeldOutCriterion(fit, tilts, targets=held, bin_to=64)  # per element
    dev = _losses(crit, cands)
    best = min(SINGLE, key=lambda k: dev[k])
    rows = []
    for k, v in dev.items():
        rows.append([k, f"{v:.0f}", f"{100 * (v / dev['none'] - 1):+.2f}",
                     f"{rots[k]:+.2f}" if k in rots else ("per view" if k.startswith("manual") else "0"),
                     f"{secs[k]:.1f}" if k in secs else ""])
    print_table("QD1, validated (estimated on one count-split half, scored per element on the other half, held-out "
                "views, SIRT 100 binned to 64 px; lower is better)",
                ["alignment", "held-out deviance", "vs none %", "rotation deg", "seconds"], rows)
    print(f"auto's stages on QD1: {stages}; auto - best single ({best}): {100 * (dev['auto'] / dev[best] - 1):+.2f} %")


def main():
    global QD1
    args = sys.argv[1:]
    if "--data" in args:
        i = args.index("--data")
        if i + 1 >= len(args):
            sys.exit("--data needs a folder")
        QD1 = Path(args[i + 1]) / QD1.name
        del args[i : i + 2]
    what = args or ["qd1", "simulated", "etspy"]
    if "validated" in what:
        if QD1.is_file():
            qd1_validated()
        else:
            print(f"QD1 absent ({QD1}): QD1 validated table skipped")
        validated(quick="--quick" in what)
        what = [w for w in what if w not in ("validated", "--quick")]
        if not what:
            return
    if "qd1" in what:
        if QD1.is_file():
            qd1()
        else:
            print(f"QD1 absent ({QD1}): QD1 tables skipped")
    if "simulated" in what:
        simulated()
    if "etspy" in what:
        etspy_comparison()


if __name__ == "__main__":
    main()
