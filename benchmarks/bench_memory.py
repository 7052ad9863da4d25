"""Peak memory of a 512 x 512 x 512 reconstruction from 13 tilts (target: within 24 GB).

Prints a table: method | volume | iterations | batch | seconds | peak RSS (GB).
Usage: python benchmarks/bench_memory.py [--size 512] [--methods sirt tv] [--iterations 5]
"""

import argparse
import resource
import time

import numpy as np

import hyperspy_edxtomo as het


def peak_rss_gb():
    # ru_maxrss is in kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--methods", nargs="+", default=["sirt", "tv"])
    ap.add_argument("--iterations", type=int, default=5, help="few: memory does not grow with iterations")
    args = ap.parse_args()
    n = args.size
    tilts = np.linspace(-60, 60, 13)
    rng = np.random.default_rng(0)
    # sparse counts like real maps (most pixels 0 or 1); the data size is what matters here
    counts = rng.poisson(0.01, (1, 13, n, n)).astype(np.uint8)
    maps = het.element_maps_from_array(counts, tilts, ["Zn"], pixel_size_nm=0.189)
    rows = []
    base = peak_rss_gb()
    for method in args.methods:
        params = {"iterations": args.iterations}
        if method in ("tv", "l1"):
            params["lam"] = 1.0
        t0 = time.perf_counter()
        vol = maps.reconstruct(method, show_progressbar=False, **params)
        dt = time.perf_counter() - t0
        batch = vol.history[-1]["parameters"]["batch_size"]
        rows.append((method, "x".join(map(str, vol.data.shape[1:])), args.iterations, batch, dt, peak_rss_gb()))
        del vol
    print(f"baseline RSS before reconstruction: {base:.2f} GB")
    print(f"{'method':<8}{'volume (z,y,x)':<18}{'iters':>6}{'batch':>7}{'seconds':>9}{'peak RSS GB':>13}")
    for m, shape, it, b, dt, rss in rows:
        print(f"{m:<8}{shape:<18}{it:>6}{b:>7}{dt:>9.1f}{rss:>13.2f}")


if __name__ == "__main__":
    main()
