"""Denoisers of element maps scored on held-out real counts (issue 6).

1. ``sait_024_2_6_frames.npz``: 15 frames of one view. The frames are
   registered on their HAADF images (HyperSpy's ``estimate_shift2D``, every
   frame against the first; integer shifts, cropped to the common field).
   For k = 1, 3, 5 the sum of the first k frames is denoised and scored
   against the other 15 - k frames:

   * held-out deviance: Poisson deviance of the summed held-out counts under
     the denoised map scaled to the held-out dose, per pixel, summed over
     Se, S, Zn (lower is better);
   * PSNR (dB) of the denoised map (per frame) against the mean of the
     held-out frames, averaged over the elements.

   Extra rows: ``denoise_deep`` trained by frame splitting on the k input
   frames (k >= 2; ``denoise_deep(frames=...)``) and by the blind spot
   (``training="blind_spot"``).

   Then what is reachable at all: an oracle smoother that sees all 15
   frames, the held-out ones included (each pixel's own count left out),
   against the "10 % below the best baseline" target; and the index of
   dispersion of the frames (1 for Poisson counts of an unchanging object).

2. ``qd1_element_maps.npz`` (13 tilts x 3 elements x 256 x 256): each count is
   split binomially in halves; one half is denoised, the held-out deviance of
   the other half is reported; the time of ``denoise_deep`` (training plus
   inference) on this series is printed.

"gaussian (best sigma)" picks sigma on the held-out data itself (an oracle
choice, in the baseline's favour); "gaussian (sigma by count-split CV)" picks
it as a user could, on a binomial count split of the input alone. Run: ``python benchmarks/bench_denoising.py``
(``--jobs 2`` runs the denoisers in parallel processes, one torch thread
each; the qd1 timing always runs alone at the end, with the default torch
threads, and prints wall-clock and CPU seconds).
"""

import argparse
import functools
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import hyperspy_edxtomo as het
from hyperspy_edxtomo.base.counts import count_split, poisson_deviance

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ELEMENTS = ["Se", "S", "Zn"]
SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)


@functools.lru_cache(maxsize=1)
def load_frames():
    """Frames (frame, element, y, x) moved onto frame 0 by whole pixels (counts
    stay integers), cropped to the common field, and the shifts.

    The shifts come from HyperSpy's ``estimate_shift2D`` on the HAADF images
    (cross-correlation, every frame against frame 0). FFT phase correlation,
    used before, found wrong peaks: it left 10 of the 15 frames 4 to 21
    pixels off, which raised every held-out deviance.
    """
    import hyperspy.api as hs

    f = np.load(DATA / "sait_024_2_6_frames.npz")
    haadf = hs.signals.Signal2D(f["HAADF"].astype(float))
    counts = np.stack([f[e] for e in ELEMENTS], axis=1).astype(np.int64)  # (frame, element, y, x)
    est = haadf.estimate_shift2D(reference="current", show_progressbar=False)
    shifts = [(-int(round(dy)), -int(round(dx))) for dy, dx in est]
    aligned = np.stack([np.roll(c, s, axis=(-2, -1)) for c, s in zip(counts, shifts)])
    m = int(max(max(abs(s[0]), abs(s[1])) for s in shifts))
    if m:
        aligned = aligned[..., m:-m, m:-m]
    return aligned, shifts


def as_maps(counts):
    """(element, y, x) counts -> one-tilt ElementMapTiltSeries."""
    return het.element_maps_from_array(counts[:, None], [0.0], ELEMENTS)


def psnr(est, ref):
    mse = np.mean((est - ref) ** 2)
    return 10 * np.log10(ref.max() ** 2 / mse) if mse > 0 else np.inf


def methods(deep_kwargs):
    from hyperspy_edxtomo.denoising.methods.bm3d import BM3D

    rows = [("raw", None), ("gaussian (best sigma)", "gaussian"), ("gaussian (sigma by count-split CV)", "gaussian_cv"),
            ("11x11 average", ("moving_average", {}))]
    rows += [("PCA", ("pca", {})), ("NMF", ("nmf", {}))]
    rows.append(("BM3D", ("bm3d", {}) if BM3D.available() else "skip"))
    rows.append(("denoise_deep", ("deep", deep_kwargs)))
    rows.append(("denoise_deep + frame splitting", ("deep_frames", deep_kwargs)))
    rows.append(("denoise_deep + blind spot", ("deep", {**deep_kwargs, "training": "blind_spot"})))
    return rows


def run_method(maps, spec, score, frames=None):
    """The denoised (element, tilt, y, x) array; for 'gaussian', the best sigma by ``score``."""
    if spec is None:
        return maps.to_numpy().astype(float), ""
    if spec == "gaussian":
        best = min(((score(maps.denoise("gaussian", sigma=s).data), s) for s in SIGMAS))
        return maps.denoise("gaussian", sigma=best[1]).data, f"sigma={best[1]}"
    if spec == "gaussian_cv":
        # what a user can do without held-out data: sigma chosen on a count split of the input itself
        counts = np.round(maps.to_numpy()).astype(np.int64)
        fit, _ = count_split(counts, 0.5, seed=0)
        half = het.element_maps_from_array(fit, maps.tilts, maps.elements)
        best = min((poisson_deviance(counts - fit, half.denoise("gaussian", sigma=s).data), s) for s in SIGMAS)
        return maps.denoise("gaussian", sigma=best[1]).data, f"sigma={best[1]}"
    name, kw = spec
    if name in ("deep", "deep_frames"):
        if name == "deep_frames":
            kw = {**kw, "frames": frames}
        out = maps.denoise_deep(show_progressbar=False, **kw)
        return out.data, f"best step {out.history[-1]['parameters']['best_step']}"
    return maps.denoise(name, **kw).data, ""


def _frames_task(args):
    """One (method, k) cell of the frames table: (deviance, PSNR, seconds, note) or None."""
    label, spec, k, threads = args
    _quiet(threads)
    aligned, _ = load_frames()
    n = aligned.shape[0]
    if spec == "skip" or (label.endswith("frame splitting") and k < 2):
        return None
    inp = aligned[:k].sum(0)  # (element, y, x)
    held = aligned[k:].sum(0)
    ref = held / (n - k)
    maps = as_maps(inp)
    npix = inp.shape[-1] * inp.shape[-2]

    def deviance(den):
        return poisson_deviance(held, den[:, 0] * (n - k) / k) / npix

    t0 = time.perf_counter()
    den, note = run_method(maps, spec, deviance, frames=aligned[:k][:, :, None])
    dt = time.perf_counter() - t0
    p = np.mean([psnr(den[e, 0] / k, ref[e]) for e in range(len(ELEMENTS))])
    return deviance(den), p, dt, note


def _qd1_task(args):
    label, spec, threads = args
    _quiet(threads)
    if spec == "skip" or label.endswith("frame splitting"):
        return None
    counts, maps, held = _qd1_half()
    npix = counts[0, 0].size * counts.shape[1]

    def deviance(den):
        return poisson_deviance(held, den) / npix

    t0 = time.perf_counter()
    den, note = run_method(maps, spec, deviance)
    return deviance(den), time.perf_counter() - t0, note


def _quiet(threads=None):
    warnings.simplefilter("ignore")
    from hyperspy.defaults_parser import preferences

    preferences.General.show_progressbar = False
    if threads:
        import torch

        torch.set_num_threads(threads)


def _map(func, tasks, jobs):
    """``[func(t) for t in tasks]``, in ``jobs`` processes; each result is
    printed as it arrives (so that a long run shows its progress)."""

    def show(task, r):
        print(f"    done: {task[0]} {task[2:-1]} -> {r}", flush=True)
        return r

    if jobs <= 1:
        return [show(t, func(t)) for t in tasks]
    from concurrent.futures import as_completed

    with ProcessPoolExecutor(jobs) as pool:
        futures = {pool.submit(func, t): i for i, t in enumerate(tasks)}
        out = [None] * len(tasks)
        for fut in as_completed(futures):
            i = futures[fut]
            out[i] = show(tasks[i], fut.result())
        return out


def frames_table(deep_kwargs, ks, jobs=1):
    aligned, shifts = load_frames()
    n = aligned.shape[0]
    print(f"sait frames: {n} frames, registered on HAADF (max shift {max(max(map(abs, s)) for s in shifts)} px), "
          f"cropped to {aligned.shape[-2]}x{aligned.shape[-1]}")
    rows = methods(deep_kwargs)
    threads = 1 if jobs > 1 else None
    tasks = [(label, spec, k, threads) for label, spec in rows for k in ks]
    # the slow (deep) cells first, so that the pool stays busy
    order = sorted(range(len(tasks)), key=lambda i: not tasks[i][0].startswith("denoise_deep"))
    done = _map(_frames_task, [tasks[i] for i in order], jobs)
    results = {(tasks[i][0], tasks[i][2]): r for i, r in zip(order, done)}
    notes = {}
    for (label, k), r in results.items():
        if r is not None and r[3]:
            notes.setdefault(label, []).append(f"k={k}: {r[3]}")
    print()
    header = "| method | " + " | ".join(f"k={k} deviance/px | k={k} PSNR dB" for k in ks) + " |"
    print(header)
    print("|" + "---|" * (1 + 2 * len(ks)))
    for label, spec in rows:
        cells = []
        for k in ks:
            r = results[(label, k)]
            if r is None:
                why = "skipped (package bm3d absent)" if spec == "skip" else "n/a (needs k >= 2 frames)"
                cells += [why, "-"]
            else:
                cells += [f"{r[0]:.5f}", f"{r[1]:.2f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    for label, ns in notes.items():
        print(f"  {label}: " + "; ".join(sorted(ns)))
    times = {label: sum(results[(label, k)][2] for k in ks if results[(label, k)]) for label, _ in rows}
    print("  seconds (all k): " + ", ".join(f"{lab} {t:.0f}" for lab, t in times.items() if t))
    best_baseline = {}
    for k in ks:
        base = {lab: v[0] for (lab, kk), v in results.items() if kk == k and v and not lab.startswith(("raw", "denoise_deep"))}
        base_cv = {lab: v for lab, v in base.items() if lab != "gaussian (best sigma)"}
        best_lab = min(base, key=base.get)
        best_baseline[k] = base[best_lab]
        for label, _ in rows:
            r = results[(label, k)]
            if label.startswith("denoise_deep") and r is not None:
                cv_lab = min(base_cv, key=base_cv.get)
                print(f"  k={k}: {label}: deviance {100 * (1 - r[0] / base[best_lab]):+.1f}% below the best "
                      f"baseline ({best_lab}, {base[best_lab]:.5f}); {100 * (1 - r[0] / base_cv[cv_lab]):+.1f}% below "
                      f"the best baseline without held-out tuning ({cv_lab}, {base_cv[cv_lab]:.5f})")
    return best_baseline


def _donut_smooth(image, sigma):
    """Gaussian smoothing that leaves each pixel's own count out (renormalised)."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((8 * int(np.ceil(sigma)) + 1,) * 2)
    c = delta.shape[0] // 2
    delta[c, c] = 1
    own = gaussian_filter(delta, sigma)[c, c]  # the kernel's centre weight
    x = image.astype(float)
    return (gaussian_filter(x, sigma) - own * x) / (1 - own)


def reachable_table(ks, best_baseline):
    """What the held-out deviance allows at all.

    * An oracle that sees all 15 frames, the held-out ones included (each
      pixel's own count left out, so that it cannot copy the answer),
      smoothed with the best sigma: a k-frame denoiser that beats it must
      know more from k frames than a smoother does from 15.
    * The frames' index of dispersion (variance across frames over mean) of
      counts binned b x b: 1 for Poisson counts of one unchanging object;
      above 1 where the object changes between frames (drift left after the
      integer registration, beam damage), which no denoiser of the input
      frames can predict and which raises the deviance of every method.
    """
    aligned, _ = load_frames()
    n = aligned.shape[0]
    npix = aligned.shape[-1] * aligned.shape[-2]
    total = aligned.sum(0)
    print(f"\nwhat is reachable: oracle with all {n} frames (held-out included, each pixel's own count left out), "
          "against the 10% target")
    print("| k | oracle deviance/px (best sigma) | best baseline | 10% below the best baseline |")
    print("|---|---|---|---|")
    for k in ks:
        held = aligned[k:].sum(0)
        dev, sigma = min((poisson_deviance(held, np.stack([_donut_smooth(t, s) for t in total]) * (n - k) / n) / npix, s)
                         for s in SIGMAS)
        print(f"| {k} | {dev:.5f} (sigma {sigma}) | {best_baseline[k]:.5f} | {0.9 * best_baseline[k]:.5f} |")
    print(f"\nindex of dispersion across the {n} frames (Poisson, unchanging object: 1)")
    print("| element | " + " | ".join(f"{b}x{b} bins" for b in (1, 2, 4, 8)) + " |")
    print("|---|---|---|---|---|")
    for e, name in enumerate(ELEMENTS):
        cells = []
        for b in (1, 2, 4, 8):
            y = aligned[:, e, : aligned.shape[-2] // b * b, : aligned.shape[-1] // b * b].astype(float)
            y = y.reshape(n, y.shape[1] // b, b, y.shape[2] // b, b).sum((2, 4))
            cells.append(f"{y.var(0, ddof=1).sum() / y.mean(0).sum():.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def _qd1_half():
    f = np.load(DATA / "qd1_element_maps.npz")
    counts = f["counts"].astype(np.int64)
    fit, held = count_split(counts, 0.5, seed=0)
    maps = het.element_maps_from_array(fit, f["tilts_deg"], [str(e) for e in f["elements"]])
    return counts, maps, held


def qd1_table(deep_kwargs, jobs=1):
    f = np.load(DATA / "qd1_element_maps.npz")
    counts = f["counts"].astype(np.int64)
    print(f"\nqd1: {counts.shape} counts, half of every count held out; held-out deviance per pixel-tilt, summed over elements")
    print("| method | held-out deviance | time s |")
    print("|---|---|---|")
    rows = methods(deep_kwargs)
    threads = 1 if jobs > 1 else None
    done = _map(_qd1_task, [(label, spec, threads) for label, spec in rows], jobs)
    for (label, spec), r in zip(rows, done):
        if r is None:
            why = "skipped (package bm3d absent)" if spec == "skip" else "n/a (no frames)"
            print(f"| {label} | {why} | - |")
            continue
        print(f"| {label} | {r[0]:.5f} | {r[1]:.1f} |" + (f" {r[2]}" if r[2] else ""))
    import torch

    full = het.element_maps_from_array(counts, f["tilts_deg"], [str(e) for e in f["elements"]])
    t0, c0 = time.perf_counter(), time.process_time()
    full.denoise_deep(show_progressbar=False, **deep_kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"\ndenoise_deep training + inference on the full qd1 series (13 tilts x 3 elements x 256x256, "
          f"{torch.get_num_threads()} torch threads): {wall:.1f} s wall-clock, {cpu:.1f} s CPU "
          f"(1-min load average at the end: {os.getloadavg()[0]:.1f})")


def set_data(folder):
    """Read the real data from ``folder`` (worker processes are forked, so they see it too)."""
    global DATA
    DATA = Path(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few training steps (smoke test)")
    parser.add_argument("--skip-qd1", action="store_true")
    parser.add_argument("--skip-frames", action="store_true", help="only the qd1 part")
    parser.add_argument("--jobs", type=int, default=1, help="denoisers run in this many processes")
    parser.add_argument("--data", type=Path, default=DATA,
                        help="folder holding sait_024_2_6_frames.npz and qd1_element_maps.npz (default ../shared/data)")
    args = parser.parse_args()
    set_data(args.data)
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cuda: {torch.cuda.is_available()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, jobs {args.jobs}")
    deep_kwargs = dict(steps=60, eval_every=20) if args.quick else {}
    _quiet()
    if not args.skip_frames:
        best_baseline = frames_table(deep_kwargs, (1, 3, 5), args.jobs)
        reachable_table((1, 3, 5), best_baseline)
    if not args.skip_qd1:
        qd1_table(deep_kwargs, args.jobs)


if __name__ == "__main__":
    main()
