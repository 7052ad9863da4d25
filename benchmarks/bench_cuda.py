"""CPU and CUDA side by side: seconds, and how far the CUDA result is from the CPU one.

Every method a user reaches with ``cuda=None`` on a GPU machine runs twice on the same simulated
dot (HAADF included, for ``fused``): ``cuda=False`` and ``cuda=True``. The table gives the seconds
of each, the relative L2 difference of the volumes (or maps) and whether the automatic choices
(strengths, weights) came out the same. A second table times the large-volume solvers, a third
one product of the projector on CUDA: the padded rows the package uses (``RowGather``, same bits
every run) against torch's sparse CSR product (cuSPARSE).

Needs a CUDA device (torch must see it); without one it says so and stops.

Usage: python benchmarks/bench_cuda.py [--size 64] [--large 256] [--product-size 512] [--skip-deep]
"""

import argparse
import time
import warnings

import numpy as np

from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.base.provenance import get_history

TWO_STEP = dict(denoiser="gaussian", mbir_iterations=100, enhancer_steps=300, angle_step=1.0)
DEEP = dict(steps=300, seed=0)
CHOICES = ("lam", "haadf_weight", "guide_strength", "data_term")


def choices(signal):
    """The automatic choices a run recorded, flattened to ``{name: value}``."""
    out = {}

    def walk(record, prefix):
        for key, value in record.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif key in CHOICES:
                out[prefix + key] = value
    walk(get_history(signal)[-1]["parameters"].get("parameters", {}), "")
    return out


def same(a, b):
    return a.keys() == b.keys() and all(
        np.isclose(a[k], b[k], rtol=1e-3) if isinstance(a[k], float) else a[k] == b[k] for k in a)


def timed(call):
    import torch

    t0 = time.perf_counter()
    out = call()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=64, help="phantom edge for the agreement table (default 64)")
    ap.add_argument("--large", type=int, default=256, help="volume edge for the speed table (0: skip it)")
    ap.add_argument("--product-size", type=int, default=512, help="slice edge for the product table (0: skip it)")
    ap.add_argument("--skip-deep", action="store_true", help="leave two_step and denoise_deep out")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("No CUDA device (torch.cuda.is_available() is False): nothing to compare. Run this where a GPU is.")
        return
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}")
    scene = datasets.simulate_scene("dot", size=args.size, counts_per_tilt=1000, haadf_snr=50, seed=1)
    runs = [("fbp", {}), ("sirt", {"iterations": 100}), ("tv", {"lam": 1.0, "iterations": 200}),
            ("tv", {}), ("tv", {"couple_elements": True}), ("l1", {}), ("fused", {})]
    if not args.skip_deep:
        runs.append(("two_step", TWO_STEP))
    print(f"\nAgreement: simulated dot {args.size}^3, 13 tilts, 1000 counts per element per view\n")
    print("| method | parameters | CPU s | CUDA s | speed-up | rel. L2 diff | same choices |")
    print("|---|---|---|---|---|---|---|")
    for method, params in runs:
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for cuda in (False, True):
                out[cuda] = timed(lambda: scene.reconstruct(method=method, cuda=cuda, show_progressbar=False,
                                                            **params))
        (cpu, t_cpu), (gpu, t_gpu) = out[False], out[True]
        shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
        print(f"| {method} | {shown} | {t_cpu:.1f} | {t_gpu:.1f} | {t_cpu / t_gpu:.1f}x | "
              f"{rel(gpu.data, cpu.data):.2e} | {same(choices(gpu), choices(cpu))} |", flush=True)
    if not args.skip_deep:
        maps = datasets.quantum_dot_element_maps(size=args.size, seed=0)
        cpu, t_cpu = timed(lambda: maps.denoise_deep(cuda=False, show_progressbar=False, **DEEP))
        gpu, t_gpu = timed(lambda: maps.denoise_deep(cuda=True, show_progressbar=False, **DEEP))
        again, _ = timed(lambda: maps.denoise_deep(cuda=True, show_progressbar=False, **DEEP))
        print(f"| denoise_deep | steps={DEEP['steps']} | {t_cpu:.1f} | {t_gpu:.1f} | {t_cpu / t_gpu:.1f}x | "
              f"{rel(gpu.data, cpu.data):.2e} (CUDA twice: {rel(again.data, gpu.data):.1e}) | - |", flush=True)

    if args.large:
        import hyperspy_edxtomo as het

        n = args.large
        tilts = np.linspace(-60, 60, 13)
        counts = np.random.default_rng(0).poisson(0.05, (1, 13, n, n)).astype(np.float32)
        maps = het.element_maps_from_array(counts, tilts, ["Zn"], pixel_size_nm=0.5)
        print(f"\nSpeed: one element, {n}^3 voxels, 13 tilts\n")
        print("| method | CPU s | CUDA s | speed-up |")
        print("|---|---|---|---|")
        for method, params in [("fbp", {}), ("sirt", {"iterations": 100}),
                               ("tv", {"lam": 1.0, "iterations": 200})]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, t_cpu = timed(lambda: maps.reconstruct(method, cuda=False, show_progressbar=False, **params))
                _, t_gpu = timed(lambda: maps.reconstruct(method, cuda=True, show_progressbar=False, **params))
            print(f"| {method} {params or ''} | {t_cpu:.1f} | {t_gpu:.1f} | {t_cpu / t_gpu:.1f}x |", flush=True)
    if args.product_size:
        products(args.product_size)


def products(n, batch=64, repeats=20):
    """One forward and one adjoint product of a batch of slices: padded rows against cuSPARSE."""
    import torch

    from hyperspy_edxtomo.reconstruction.projector import Projector

    P = Projector(np.linspace(-60, 60, 13), n_x=n, cuda=True)
    rng = np.random.default_rng(0)
    print(f"\nOne product on CUDA: {n}x{n} slices, 13 tilts, batch of {batch} slices, mean of {repeats}\n")
    print("| product | padded rows ms | cuSPARSE ms | rel. diff | padded rows: same bits twice | "
          "cuSPARSE: same bits twice |")
    print("|---|---|---|---|---|---|")
    for name, M, G in (("A x", P.matrix[0], P.device_matrices()[0]), ("A^T y", P.matrix[1], P.device_matrices()[1])):
        csr = torch.sparse_csr_tensor(torch.from_numpy(M.indptr.astype(np.int64)),
                                      torch.from_numpy(M.indices.astype(np.int64)),
                                      torch.from_numpy(M.data), size=M.shape).cuda()
        x = torch.from_numpy(rng.random((M.shape[1], batch)).astype(np.float32)).cuda()
        times, outs = {}, {}
        for label, op in (("rows", lambda: G @ x), ("csr", lambda: csr @ x)):
            outs[label] = [op(), op()]
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(repeats):
                op()
            torch.cuda.synchronize()
            times[label] = (time.perf_counter() - t0) / repeats * 1e3
        diff = rel(outs["rows"][0].cpu().numpy(), outs["csr"][0].cpu().numpy())
        print(f"| {name} | {times['rows']:.2f} | {times['csr']:.2f} | {diff:.1e} | "
              f"{torch.equal(*outs['rows'])} | {torch.equal(*outs['csr'])} |", flush=True)


if __name__ == "__main__":
    main()
