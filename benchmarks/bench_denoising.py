"""Denoisers of element maps scored on held-out real counts (issue 6).

1. ``sait_024_2_6_frames.npz``: 15 frames of one view. The frames are
   registered on their HAADF images (FFT phase correlation, integer shifts,
   cropped to the common field). For k = 1, 3, 5 the sum of the first k frames
   is denoised and scored against the other 15 - k frames:

   * held-out deviance: Poisson deviance of the summed held-out counts under
     the denoised map scaled to the held-out dose, per pixel, summed over
     Se, S, Zn (lower is better);
   * PSNR (dB) of the denoised map (per frame) against the mean of the
     held-out frames, averaged over the elements.

2. ``qd1_element_maps.npz`` (13 tilts x 3 elements x 256 x 256): each count is
   split binomially in halves; one half is denoised, the held-out deviance of
   the other half is reported; the time of ``denoise_deep`` (training plus
   inference) on this series is printed.

"gaussian (best sigma)" picks sigma on the held-out data itself (an oracle
choice, in the baseline's favour). Run: ``python benchmarks/bench_denoising.py``.
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

import hyperspy_edxtomo as het
from hyperspy_edxtomo.solvers import poisson_deviance

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ELEMENTS = ["Se", "S", "Zn"]
SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)


def phase_correlation_shift(ref, img):
    """Integer (dy, dx) such that np.roll(img, (dy, dx)) best matches ref."""
    a = np.fft.fft2(ref - ref.mean())
    b = np.fft.fft2(img - img.mean())
    r = a * np.conj(b)
    r /= np.abs(r) + 1e-12
    corr = np.fft.ifft2(r).real
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    ny, nx = corr.shape
    return (dy - ny if dy > ny // 2 else dy), (dx - nx if dx > nx // 2 else dx)


def load_frames():
    f = np.load(DATA / "sait_024_2_6_frames.npz")
    haadf = f["HAADF"].astype(float)
    counts = np.stack([f[e] for e in ELEMENTS], axis=1).astype(np.int64)  # (frame, element, y, x)
    shifts = [phase_correlation_shift(haadf[0], h) for h in haadf]
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
    from hyperspy_edxtomo_plugins.denoise_bm3d import BM3D

    rows = [("raw", None), ("gaussian (best sigma)", "gaussian"), ("11x11 average", ("moving_average", {}))]
    rows += [("PCA", ("pca", {})), ("NMF", ("nmf", {}))]
    rows.append(("BM3D", ("bm3d", {}) if BM3D.available() else "skip"))
    rows.append(("denoise_deep", ("deep", deep_kwargs)))
    return rows


def run_method(maps, spec, score):
    """The denoised (element, tilt, y, x) array; for 'gaussian', the best sigma by ``score``."""
    if spec is None:
        return maps.to_numpy().astype(float), ""
    if spec == "gaussian":
        best = min(((score(maps.denoise("gaussian", sigma=s).data), s) for s in SIGMAS))
        return maps.denoise("gaussian", sigma=best[1]).data, f"sigma={best[1]}"
    name, kw = spec
    if name == "deep":
        out = maps.denoise_deep(show_progressbar=False, **kw)
        return out.data, f"best step {out.history[-1]['parameters']['best_step']}"
    return maps.denoise(name, **kw).data, ""


def frames_table(deep_kwargs, ks):
    aligned, shifts = load_frames()
    n = aligned.shape[0]
    print(f"sait frames: {n} frames, registered on HAADF (max shift {max(max(map(abs, s)) for s in shifts)} px), "
          f"cropped to {aligned.shape[-2]}x{aligned.shape[-1]}")
    results = {}
    notes = {}
    for k in ks:
        inp = aligned[:k].sum(0)  # (element, y, x)
        held = aligned[k:].sum(0)
        ref = held / (n - k)
        maps = as_maps(inp)
        npix = inp.shape[-1] * inp.shape[-2]

        def deviance(den, held=held, k=k):
            return poisson_deviance(held, den[:, 0] * (n - k) / k) / npix

        for label, spec in methods(deep_kwargs):
            if spec == "skip":
                results[(label, k)] = None
                continue
            t0 = time.perf_counter()
            den, note = run_method(maps, spec, deviance)
            dt = time.perf_counter() - t0
            p = np.mean([psnr(den[e, 0] / k, ref[e]) for e in range(len(ELEMENTS))])
            results[(label, k)] = (deviance(den), p, dt)
            if note:
                notes.setdefault(label, []).append(f"k={k}: {note}")
    print()
    header = "| method | " + " | ".join(f"k={k} deviance/px | k={k} PSNR dB" for k in ks) + " |"
    print(header)
    print("|" + "---|" * (1 + 2 * len(ks)))
    for label, _ in methods(deep_kwargs):
        cells = []
        for k in ks:
            r = results[(label, k)]
            cells += ["skipped (package bm3d absent)", "-"] if r is None else [f"{r[0]:.5f}", f"{r[1]:.2f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    for label, ns in notes.items():
        print(f"  {label}: " + "; ".join(ns))
    best_base = {k: min(v[0] for (lab, kk), v in results.items() if kk == k and v and lab not in ("raw", "denoise_deep")) for k in ks}
    for k in ks:
        d = results[("denoise_deep", k)][0]
        print(f"  k={k}: denoise_deep deviance {100 * (1 - d / best_base[k]):+.1f}% below the best baseline "
              f"({'lower' if d < best_base[k] else 'higher'})")


def qd1_table(deep_kwargs):
    f = np.load(DATA / "qd1_element_maps.npz")
    counts = f["counts"].astype(np.int64)
    rng = np.random.default_rng(0)
    fit = rng.binomial(counts, 0.5)
    held = counts - fit
    maps = het.element_maps_from_array(fit, f["tilts_deg"], [str(e) for e in f["elements"]])
    npix = counts[0, 0].size * counts.shape[1]

    def deviance(den):
        return poisson_deviance(held, den) / npix

    print(f"\nqd1: {counts.shape} counts, half of every count held out; held-out deviance per pixel-tilt, summed over elements")
    print("| method | held-out deviance | time s |")
    print("|---|---|---|")
    for label, spec in methods(deep_kwargs):
        if spec == "skip":
            print(f"| {label} | skipped (package bm3d absent) | - |")
            continue
        t0 = time.perf_counter()
        den, note = run_method(maps, spec, deviance)
        dt = time.perf_counter() - t0
        print(f"| {label} | {deviance(den):.5f} | {dt:.1f} |" + (f" {note}" if note else ""))
    t0 = time.perf_counter()
    full = het.element_maps_from_array(counts, f["tilts_deg"], [str(e) for e in f["elements"]])
    full.denoise_deep(show_progressbar=False, **deep_kwargs)
    print(f"\ndenoise_deep training + inference on the full qd1 series (13 tilts x 3 elements x 256x256): "
          f"{time.perf_counter() - t0:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few training steps (smoke test)")
    parser.add_argument("--skip-qd1", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cuda: {torch.cuda.is_available()}")
    deep_kwargs = dict(steps=60, eval_every=20) if args.quick else {}
    warnings.simplefilter("ignore")
    from hyperspy.defaults_parser import preferences

    preferences.General.show_progressbar = False
    frames_table(deep_kwargs, (1, 3, 5))
    if not args.skip_qd1:
        qd1_table(deep_kwargs)


if __name__ == "__main__":
    main()
