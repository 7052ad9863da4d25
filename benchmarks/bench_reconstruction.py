"""Reconstruction benchmarks of hyperspy_edxtomo: speed, quality, real data.

Prints tables (no timed tests, nothing asserted):

1. Speed: a ``--size``-slice ``--size`` x ``--size`` volume from 13 tilts
   over +-60 deg (Poisson counts of a core-shell phantom). SIRT (50
   iterations) of this project against ASTRA's CPU SIRT looping over slices
   (``linear`` projector, the same geometry) and etspy's
   ``TomoStack.reconstruct("SIRT")``, with the largest difference between
   results; TV (300 iterations, fixed strength) and FBP.
2. Quality against ground truth (simulated phantom, real-data dose):
   Pearson r, NRMSE after a least-squares scale, Dice of Otsu masks, per
   element, for fbp, sirt, tv and l1 (strength "auto"); and the auto-chosen
   strength against the best one on a scan (ratio; the target is within 3).
3. Real data (QD1, ``../shared/data/qd1_element_maps.npz``): held-out-count
   Poisson deviance per element and method, after the authors' manual
   pre-alignment.

Usage::

    python benchmarks/bench_reconstruction.py            # ~5-8 min on 2 cores
    python benchmarks/bench_reconstruction.py --quick    # ~2.5 min
    python benchmarks/bench_reconstruction.py --sections speed --size 256
"""

import argparse
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[1]
QD1 = REPO.parent / "shared" / "data" / "qd1_element_maps.npz"
SECTIONS = ("speed", "quality", "qd1")


# ---------------------------------------------------------------------------------
# helpers


def table(title, header, rows):
    """Print a plain-text table with '|' separators."""
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    print(f"\n## {title}")
    print(line(cells[0]))
    print("-+-".join("-" * w for w in widths))
    for r in cells[1:]:
        print(line(r))
    sys.stdout.flush()


def _fmt(c):
    if isinstance(c, float):
        if c == 0 or 1e-3 <= abs(c) < 1e5:
            return f"{c:.4g}"
        return f"{c:.3e}"
    return str(c)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0


def quality(rec, truth):
    """Pearson r, NRMSE after the least-squares scale, Dice of Otsu masks (hyperspy_edxtomo.analysis.metrics)."""
    from hyperspy_edxtomo.analysis.metrics import dice, nrmse, pearson

    return pearson(rec, truth), nrmse(rec, truth), dice(rec, truth, level="otsu")


def rel_diff(a, ref):
    return float(np.max(np.abs(np.asarray(a, np.float64) - ref)) / np.max(np.abs(ref)))


def chosen_lam(volume, element_index, elements):
    """The strength a reconstruction used, from its history (per element when they differ)."""
    lam = volume.history[-1]["parameters"]["parameters"]
    if isinstance(lam, dict) and "lam" not in lam:
        lam = lam[elements[element_index]]
    return float(lam["lam"])


def phantom_volume(size, elements=None, kind="InP/ZnSe/ZnS", seed=0):
    """Core-shell phantom of ``size`` voxels, the default particle in the box (12.1 nm)."""
    from hyperspy_edxtomo import datasets, volume_from_array

    ph = datasets.core_shell_phantom(kind, size=size, voxel_size_nm=0.189 * 64 / size, seed=seed)
    if elements is None:
        return ph
    data = ph.to_numpy()
    idx = [ph.elements.index(e) for e in elements]
    return volume_from_array(data[idx], list(elements), voxel_size_nm=ph.voxel_size[0], title="phantom")


def git_state():
    """HEAD and the modified files outside benchmarks/ (the code being measured)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "(not a git checkout)"
    dirty = [line[3:] for line in status if not line[3:].startswith("benchmarks/")]
    return f"{head}" + (f" + uncommitted {', '.join(dirty)}" if dirty else "")


# ---------------------------------------------------------------------------------
# 1. speed


def astra_sirt_slices(sinos, tilts_deg, n_z, iterations, threads):
    """ASTRA CPU SIRT, one slice at a time: ``linear`` projector, angles -theta, MinConstraint 0."""
    import astra

    n_x = sinos.shape[-1]
    vg = astra.create_vol_geom(n_z, n_x)
    pg = astra.create_proj_geom("parallel", 1.0, n_x, -np.deg2rad(tilts_deg))

    def one(sino):
        pid = astra.create_projector("linear", pg, vg)
        sid = astra.data2d.create("-sino", pg, sino)
        rid = astra.data2d.create("-vol", vg, 0.0)
        cfg = astra.astra_dict("SIRT")
        cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid)
        cfg["option"] = {"MinConstraint": 0.0}
        alg = astra.algorithm.create(cfg)
        try:
            astra.algorithm.run(alg, iterations)
            return astra.data2d.get(rid)
        finally:
            astra.algorithm.delete(alg)
            astra.data2d.delete([sid, rid])
            astra.projector.delete(pid)

    with ThreadPoolExecutor(threads) as ex:
        return np.stack(list(ex.map(one, sinos)))


def astra_fbp_slices(sinos, tilts_deg, n_z):
    import astra

    n_x = sinos.shape[-1]
    vg = astra.create_vol_geom(n_z, n_x)
    pg = astra.create_proj_geom("parallel", 1.0, n_x, -np.deg2rad(tilts_deg))
    pid = astra.create_projector("linear", pg, vg)
    out = []
    for sino in sinos:
        sid = astra.data2d.create("-sino", pg, sino)
        rid = astra.data2d.create("-vol", vg, 0.0)
        cfg = astra.astra_dict("FBP")
        cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid)
        cfg["option"] = {"FilterType": "ram-lak"}
        alg = astra.algorithm.create(cfg)
        astra.algorithm.run(alg)
        out.append(astra.data2d.get(rid))
        astra.algorithm.delete(alg)
        astra.data2d.delete([sid, rid])
    astra.projector.delete(pid)
    return np.stack(out)


def etspy_sirt(sinos, tilts_deg, iterations, ncores):
    """etspy TomoStack SIRT (CPU); returns slices (B, n_z, n_x) in etspy's orientation."""
    import etspy.api as etspy

    # etspy: stack (tilt, detector, slice), the tilt axis along the last axis
    stack = np.ascontiguousarray(sinos.transpose(1, 2, 0))
    ts = etspy.TomoStack(stack, tilts=np.asarray(tilts_deg, float))
    rec = ts.reconstruct(
        method="SIRT", iterations=iterations, constrain=True, thresh=0, cuda=False,
        show_progressbar=False, ncores=ncores,
    )
    return np.asarray(rec.data)  # (slice, thickness = z, detector = x)


def best_flip(candidate, ref):
    """Smallest max-rel-diff over the obvious mirrors of (slice, z, x); returns (diff, name)."""
    flips = {
        "none": lambda a: a,
        "z": lambda a: a[:, ::-1, :],
        "x": lambda a: a[:, :, ::-1],
        "z,x": lambda a: a[:, ::-1, ::-1],
    }
    res = {name: rel_diff(f(candidate), ref) for name, f in flips.items()}
    name = min(res, key=res.get)
    return res[name], name, res


def section_speed(args):
    import torch

    from hyperspy_edxtomo import datasets
    from hyperspy_edxtomo.reconstruction.projector import Projector, _system_matrix
    from hyperspy_edxtomo.reconstruction.strength import reference_strength

    n = args.size
    threads = os.cpu_count() or 1
    print(f"\n# 1. Speed: {n} slices of {n}x{n}, 13 tilts +-60 deg, {threads} CPU cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    with Timer() as t_sim:
        ph = phantom_volume(n, elements=["Zn"])
        maps = datasets.simulate_element_maps(ph, counts_per_tilt=args.speed_counts, seed=0)
    counts = maps.to_numpy()[0].astype(np.float32)  # (tilt, y, x)
    tilts = maps.tilts
    sinos = np.ascontiguousarray(counts.transpose(1, 0, 2))  # (slice, tilt, x)
    print(f"(phantom + Poisson maps: {t_sim.s:.1f} s; {counts.sum() / counts.shape[0]:.0f} counts per tilt)")

    rows = []
    _system_matrix.cache_clear()
    with Timer() as t_mat:
        Projector(tilts, n_x=n).matrix
    rows.append(["system matrix", "this project (ASTRA linear -> CSR, cached)", t_mat.s, "", ""])

    with Timer() as t:
        ours = maps.reconstruct("sirt", iterations=50, show_progressbar=False).to_numpy()[0]
    ours = np.ascontiguousarray(ours.transpose(1, 0, 2))  # (z, y, x) -> (slice y, z, x)
    rows.append(["SIRT 50 it", "this project (maps.reconstruct)", t.s, "<= 10", "reference"])

    # ASTRA and etspy: a subset of slices around the centre, time scaled to all slices
    k = n if args.astra_slices <= 0 else min(args.astra_slices, n)
    lo = (n - k) // 2
    sub = slice(lo, lo + k)
    scale = n / k
    note = "" if k == n else f" [{k} slices, time x{scale:g}]"
    if not args.skip_astra:
        with Timer() as t:
            ast = astra_sirt_slices(sinos[sub], tilts, n, 50, threads)
        rows.append(["SIRT 50 it", f"ASTRA CPU SIRT per slice, {threads} threads{note}", t.s * scale, "",
                     rel_diff(ast, ours[sub])])
    if not args.skip_etspy:
        try:
            import etspy  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            rows.append(["SIRT 50 it", f"etspy: not importable ({type(exc).__name__})", "", "", ""])
        else:
            with Timer() as t:
                ets = etspy_sirt(sinos[sub], tilts, 50, threads)
            d, flip, alld = best_flip(ets, ours[sub])
            rows.append(["SIRT 50 it", f"etspy {etspy.__version__} TomoStack.reconstruct, ncores={threads}{note}",
                         t.s * scale, "", f"{d:.3g} (flip {flip}; " +
                         ", ".join(f"{kk}: {v:.2g}" for kk, v in alld.items()) + ")"])

    lam = 0.1 * reference_strength(sinos, Projector(tilts, n_x=n))
    with Timer() as t:
        maps.reconstruct("tv", lam=lam, iterations=300, show_progressbar=False)
    rows.append(["TV 300 it", f"this project, lam={lam:.3g} fixed", t.s, "<= 60", ""])

    with Timer() as t:
        fbp = maps.reconstruct("fbp", filter="ram-lak", show_progressbar=False).to_numpy()[0]
    fbp = fbp.transpose(1, 0, 2)
    rows.append(["FBP", "this project (ram-lak)", t.s, "", "reference"])
    if not args.skip_astra:
        with Timer() as t:
            afbp = astra_fbp_slices(sinos[sub], tilts, n)
        s_ls = float(np.vdot(afbp, fbp[sub]) / np.vdot(afbp, afbp))
        rows.append(["FBP", f"ASTRA CPU FBP per slice, ram-lak{note}", t.s * scale, "",
                     f"{rel_diff(afbp, fbp[sub]):.3g} ({rel_diff(s_ls * afbp, fbp[sub]):.3g} after scaling ASTRA "
                     f"by {s_ls:.3g})"])
    table("Speed", ["method", "implementation", "seconds", "target s", "max rel. diff"], rows)


# ---------------------------------------------------------------------------------
# 2. quality on phantoms


def section_quality(args):
    from hyperspy_edxtomo import datasets

    n = args.quality_size
    elements = args.quality_elements
    print(f"\n# 2. Quality vs ground truth: InP/ZnSe/ZnS phantom {n}^3, 13 tilts +-60 deg, "
          f"counts per tilt {({e: datasets.DEFAULT_COUNTS_PER_TILT[e] for e in elements})}")
    ph = phantom_volume(n, elements=elements)
    truth = ph.to_numpy()
    maps = datasets.simulate_element_maps(ph, seed=1)
    methods = [
        ("fbp", {}),
        ("sirt", {"iterations": 50}),
        ("tv", {"lam": "auto"}),
        ("l1", {"lam": "auto"}),
    ]
    rows, vols, secs = [], {}, {}
    for name, kw in methods:
        with Timer() as t:
            vols[name] = maps.reconstruct(name, show_progressbar=False, **kw)
        secs[name] = t.s
        rec = vols[name].to_numpy()
        for i, el in enumerate(elements):
            p, e, d = quality(rec[i], truth[i])
            lam = f"{chosen_lam(vols[name], i, elements):.3g}" if kw.get("lam") == "auto" else ""
            rows.append([name, el, p, e, d, lam, t.s if i == 0 else ""])
    table("Quality (higher r and Dice, lower NRMSE are better)",
          ["method", "element", "Pearson r", "NRMSE", "Dice (Otsu)", "auto lam", "seconds (all el.)"], rows)

    # auto strength vs the best against ground truth
    factors = args.lam_factors
    rows = []
    for name in ("tv", "l1"):
        for i, el in enumerate(elements):
            auto = chosen_lam(vols[name], i, elements)
            one = maps.element(el)
            scores = {}
            for f in factors:
                rec = one.reconstruct(name, lam=auto * f, show_progressbar=False).to_numpy()[0]
                scores[f] = quality(rec, truth[i])
            # best NRMSE; among ties (identical results) the factor nearest to auto
            low = min(v[1] for v in scores.values())
            best_f = min((f for f in factors if scores[f][1] <= low + 1e-6), key=lambda f: abs(np.log(f)))
            edge = best_f in (min(factors), max(factors))
            ratio = 1.0 / best_f  # auto / best
            ok = "yes" if (1 / 3 <= ratio <= 3 and not edge) else ("edge of scan" if edge else "no")
            curve = " ".join(f"{scores[f][1]:.3f}" for f in factors)
            # a run of identical results up to the top of the scan: lam has no effect there
            flat = len(factors) - 1
            while flat > 0 and abs(scores[factors[flat - 1]][1] - scores[factors[-1]][1]) <= 1e-6:
                flat -= 1
            note = f"identical for lam >= {auto * factors[flat]:.3g}" if flat < len(factors) - 1 else ""
            rows.append([name, el, f"{auto:.3g}", f"{auto * best_f:.3g}", ratio, scores[1.0][1], scores[best_f][1],
                         ok, curve, note])
    table(f"Auto lam vs best lam on ground truth (NRMSE), scan = auto x {[round(f, 3) for f in factors]}",
          ["method", "element", "auto lam", "best lam", "auto/best", "NRMSE auto", "NRMSE best", "within x3",
           "NRMSE over the scan", "note"], rows)


# ---------------------------------------------------------------------------------
# 3. QD1 real data


def align_qd1(d):
    """The authors' manual pre-alignment: rotate CCW, shift columns/rows, mask; rounded to counts."""
    from scipy import ndimage

    counts = d["counts"].astype(np.float32)
    out = np.empty_like(counts)
    for e in range(counts.shape[0]):
        for t in range(counts.shape[1]):
            img = ndimage.rotate(counts[e, t], float(d["ref_rotation_deg"][t]), order=1, reshape=False,
                                 mode="constant", cval=0.0)
            img = ndimage.shift(img, (float(d["ref_shift_y_px"][t]), float(d["ref_shift_x_px"][t])), order=1,
                                mode="constant", cval=0.0)
            out[e, t] = img * d["ref_mask"][t]
    return np.clip(np.round(out), 0, None)


def section_qd1(args):
    import hyperspy_edxtomo as het
    from hyperspy_edxtomo.base.counts import count_split, poisson_deviance
    from hyperspy_edxtomo.reconstruction.projector import Projector

    qd1 = args.data / QD1.name
    if not qd1.is_file():
        print(f"\n# 3. QD1: skipped, {qd1} is absent")
        return
    d = np.load(qd1)
    b = args.qd1_bin
    with Timer() as t_al:
        aligned = align_qd1(d)
    n_el, n_t, ny, nx = aligned.shape
    if b > 1:  # sum b x b pixels: still integer counts
        aligned = aligned[:, :, : ny // b * b, : nx // b * b].reshape(n_el, n_t, ny // b, b, nx // b, b).sum((3, 5))
    elements = [str(e) for e in d["elements"]]
    tilts = d["tilts_deg"].astype(float)
    print(f"\n# 3. QD1 real data: held-out Poisson deviance (50/50 count split), maps {aligned.shape[2:]} "
          f"(binned {b}x{b}), alignment {t_al.s:.1f} s; counts per tilt {aligned.sum((2, 3)).mean(1).round()}")
    fit, held = count_split(aligned, 0.5, seed=0)
    maps = het.element_maps_from_array(fit, tilts, elements, pixel_size_nm=float(d["pixel_size_nm"]) * b)
    order = np.argsort(tilts, kind="stable")
    held, tilts_sorted = held[:, order], tilts[order]
    P = Projector(tilts_sorted, n_x=maps.to_numpy().shape[-1])
    methods = [
        ("fbp (clipped >= 0)", "fbp", {"constrain": True}),
        ("sirt 50", "sirt", {"iterations": 50}),
        ("tv auto", "tv", {"lam": "auto"}),
        ("l1 auto", "l1", {"lam": "auto"}),
    ]
    rows = []
    zero = [poisson_deviance(held[i], np.full(held[i].shape, held[i].mean())) for i in range(n_el)]
    rows.append(["flat (mean count)", *[f"{z:.1f}" for z in zero], "", ""])
    for label, name, kw in methods:
        with Timer() as t:
            vol = maps.reconstruct(name, show_progressbar=False, **kw)
        rec = vol.to_numpy()  # (element, z, y, x)
        devs, lams = [], []
        for i in range(n_el):
            slices = np.ascontiguousarray(rec[i].transpose(1, 0, 2))  # (y, z, x)
            mu = P.forward(slices).transpose(1, 0, 2)  # (tilt, y, x), same dose as the fit half
            devs.append(poisson_deviance(held[i], mu))
            if kw.get("lam") == "auto":
                lams.append(f"{chosen_lam(vol, i, elements):.3g}")
        rows.append([label, *[f"{v:.1f}" for v in devs], ", ".join(lams), t.s])
    table("QD1 held-out deviance per element (lower is better)",
          ["method", *elements, "auto lam", "seconds"], rows)


# ---------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=None, help="speed volume edge (default 256, --quick 64)")
    ap.add_argument("--quick", action="store_true", help="small sizes, ~2.5 minutes")
    ap.add_argument("--skip-etspy", action="store_true", help="leave etspy out of the speed table")
    ap.add_argument("--skip-astra", action="store_true", help="leave ASTRA's own SIRT/FBP out of the speed table")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--astra-slices", type=int, default=None,
                    help="slices ASTRA/etspy reconstruct (time scaled to all); 0 = all (default 64, --quick all)")
    ap.add_argument("--speed-counts", type=float, default=5000.0, help="expected counts per tilt (speed data)")
    ap.add_argument("--quality-size", type=int, default=None, help="phantom edge for quality (default 64, --quick 32)")
    ap.add_argument("--qd1-bin", type=int, default=None, help="bin QD1 maps b x b (default 2, --quick 4)")
    ap.add_argument("--data", type=Path, default=QD1.parent,
                    help="folder holding qd1_element_maps.npz (default ../shared/data)")
    args = ap.parse_args(argv)
    q = args.quick
    args.size = args.size or (64 if q else 256)
    args.astra_slices = args.astra_slices if args.astra_slices is not None else (0 if q else 64)
    args.quality_size = args.quality_size or (32 if q else 64)
    args.qd1_bin = args.qd1_bin or (4 if q else 2)
    # the elements of the real data (QD1): Se in the core, S in the outer shell, Zn in both shells
    args.quality_elements = ["Se", "S", "Zn"]
    args.lam_factors = [1 / 9, 1 / 3, 1.0, 3.0, 9.0] if q else [1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0]

    from hyperspy.defaults_parser import preferences

    preferences.General.show_progressbar = False
    t0 = time.perf_counter()
    import skimage  # Otsu's threshold of the Dice scores (hyperspy_edxtomo.analysis.metrics)

    otsu = f"skimage {skimage.__version__}"
    print(f"bench_reconstruction: {'quick' if q else 'full'} run, sections {args.sections}; Otsu from {otsu}; "
          f"code {git_state()}")
    if "speed" in args.sections:
        section_speed(args)
    if "quality" in args.sections:
        section_quality(args)
    if "qd1" in args.sections:
        section_qd1(args)
    print(f"\nTotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
