"""The paper's deep reconstructions against sirt, tv and l1 (issue 7 evidence).

Usage::

    python benchmarks/bench_deep_reconstruction.py [simulated] [wedge] [qd1] [timing] [--out DIR]

``simulated``
    core-shell phantoms (InP/ZnSe/ZnS, 64 voxels of 0.189 nm, 13 tilts over
    +-60 deg, real-data dose: Se 1500, S 800, Zn 2400, In 1500, P 600 counts per
    tilt), two particles (seeds 1, 2): per element Pearson, NRMSE (least-squares
    scale) and Dice (at half the truth's maximum) for sirt, tv (auto), l1
    (auto), two_step and end_to_end. The end_to_end weights are trained on two
    other simulated particles (seeds 11, 12), never on the scored ones.
``qd1``
    the real series ``../shared/data/qd1_element_maps.npz``, aligned by
    ``maps.align()`` (counts stay counts) and cropped to the two whole dots
    (rows 40:200, columns 80:176): each method reconstructs one count-split
    half; the Poisson deviance of the other half's counts under its
    re-projection (lower is better) and the FSC between the two halves'
    volumes (0.143 and 1/2-bit, in nm). PNG cuts (xy/xz/yz) per method.
    end_to_end uses weights trained on simulated Se/S/Zn dots at the same
    pixel size (data the project makes).
``wedge``
    Q^S's output against the phantom's true projections, inside the measured
    range and in the missing wedge, compared with the MBIR re-projection.
``timing``
    two_step on the whole QD1 series (3 elements, 13 tilts, 256 x 256), its
    stages' times, and end_to_end's network pass on 3 x 256^3.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

import hyperspy_edxtomo as het
from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.analysis import metrics
from hyperspy_edxtomo.base.counts import count_split, poisson_deviance
from hyperspy_edxtomo.reconstruction.projector import Projector

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
METHODS = {
    "sirt": {"iterations": 50},
    "tv": {},
    "l1": {},
    "two_step": {},
}
CROP = (slice(40, 200), slice(80, 176))
ONLY = None  # --methods


def _methods(weights):
    chosen = {**METHODS, "end_to_end": {"weights": str(weights)}}
    return {k: v for k, v in chosen.items() if ONLY is None or k in ONLY}


def table(header, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print(flush=True)


def train_weights(out, elements=None, seeds=(11, 12)):
    """End-to-end weights from simulated dots only (what a shipped file may come from)."""
    series = []
    for s in seeds:
        maps = datasets.quantum_dot_element_maps(size=64, seed=s)
        if elements is not None:
            idx = [maps.elements.index(e) for e in elements]
            maps = het.element_maps_from_array(maps.data[idx], maps.tilts, elements, pixel_size_nm=maps.pixel_size[0])
        series.append(maps)
    t0 = time.perf_counter()
    model = het.train_end_to_end(series, out=out, show_progressbar=False)
    return model, time.perf_counter() - t0


def simulated(out):
    weights = out / "e2e_simulated_InP_ZnSe_ZnS.pt"
    if ONLY is None or "end_to_end" in ONLY:
        model, t_train = train_weights(weights)
        print(f"end_to_end weights: {weights} (trained on seeds 11, 12 in {t_train:.0f} s)\n")
    rows, wins = [], []
    for seed in (1, 2):
        maps = datasets.quantum_dot_element_maps(size=64, seed=seed)
        truth = maps.metadata.Simulation.ground_truth.data
        results = {}
        for method, params in _methods(weights).items():
            t0 = time.perf_counter()
            vol = maps.reconstruct(method, show_progressbar=False, **params)
            dt = time.perf_counter() - t0
            results[method] = [metrics.scores(v, g) for v, g in zip(vol.data, truth)]
            for el, sc in zip(maps.elements, results[method]):
                rows.append([seed, method, el, f"{sc['pearson']:.3f}", f"{sc['nrmse']:.3f}", f"{sc['dice']:.3f}", f"{dt:.0f}"])
        for e, el in enumerate(maps.elements if {"two_step", "tv"} <= set(results) else []):
            a, b = results["two_step"][e], results["tv"][e]
            wins.append((seed, el, a["pearson"] > b["pearson"], a["nrmse"] < b["nrmse"], a["dice"] > b["dice"]))
    print("## Simulated InP/ZnSe/ZnS dots (64^3 voxels of 0.189 nm, 13 tilts, real-data dose)")
    table(["seed", "method", "element", "Pearson", "NRMSE", "Dice", "s"], rows)
    print("two_step better than tv (auto): (seed, element, Pearson, NRMSE, Dice)")
    for w in wins:
        print("   ", w)
    print(f"all better: {all(all(w[2:]) for w in wins)}\n", flush=True)


def load_qd1():
    z = np.load(DATA / "qd1_element_maps.npz")
    maps = het.element_maps_from_array(z["counts"], z["tilts_deg"], [str(e) for e in z["elements"]],
                                       pixel_size_nm=float(z["pixel_size_nm"]))
    return maps


def qd1(out):
    from hyperspy_edxtomo.workflow.figures import volume_cuts

    maps = load_qd1()
    t0 = time.perf_counter()
    aligned = maps.align(show_progressbar=False)
    print(f"QD1 aligned in {time.perf_counter() - t0:.0f} s: rotation {aligned.metadata.Tomography.alignment.rotation_deg:+.2f} deg")
    counts = aligned.to_numpy()[:, :, CROP[0], CROP[1]]
    fit, held = count_split(counts, 0.5, seed=0)
    elements = maps.elements
    halves = [het.element_maps_from_array(h, maps.tilts, elements, pixel_size_nm=maps.pixel_size[0]) for h in (fit, held)]
    weights = out / "e2e_simulated_Se_S_Zn.pt"
    if not weights.exists() and (ONLY is None or "end_to_end" in ONLY):
        train_weights(weights, elements=elements)
    P = Projector(maps.tilts, n_x=counts.shape[-1])
    rows = []
    for method, params in _methods(weights).items():
        t0 = time.perf_counter()
        vols = [h.reconstruct(method, show_progressbar=False, **params) for h in halves]
        dt = time.perf_counter() - t0
        fsc = vols[0].fourier_shell_correlation(vols[1])
        res = fsc.metadata.Tomography.FSC
        for e, el in enumerate(elements):
            v = vols[0].data[e]
            mu = P.forward(np.ascontiguousarray(v.transpose(1, 0, 2))).transpose(1, 0, 2)  # (tilt, y, x)
            dev = poisson_deviance(held[e], np.clip(mu, 0, None))
            rows.append([method, el, f"{dev:.1f}", f"{res.resolution_0143[el]:.2f}", f"{res.resolution_half_bit[el]:.2f}",
                         f"{dt:.0f}"])
        volume_cuts(vols[0], out / f"qd1_{method}_cuts.png")
    print("## QD1 (aligned, cropped 160 x 96 px, count-split halves)")
    table(["method", "element", "held-out deviance", "FSC 0.143 nm", "FSC 1/2-bit nm", "s (both halves)"], rows)
    print(f"figures: {out}/qd1_<method>_cuts.png\n", flush=True)


def timing(out):
    maps = load_qd1()
    aligned = maps.align(show_progressbar=False)
    t0 = time.perf_counter()
    vol, inter = aligned.reconstruct("two_step", show_progressbar=False, return_intermediates=True)
    total = time.perf_counter() - t0
    stages = inter["report"]["timings"]
    print("## two_step on the whole QD1 series (3 x 13 x 256 x 256)")
    table(["stage", "seconds"], [[k, v] for k, v in stages.items()] + [["whole reconstruct()", f"{total:.1f}"]])
    wedge = inter["report"]["wedge_check"]["relative_change"]
    enh = inter["report"]["enhancer"]
    rows = []
    for e, el in enumerate(vol.elements):
        rows.append([el, f"{enh['deviance_reprojection'][e]:.1f}", f"{enh['deviance_enhanced'][e]:.1f}",
                     f"{wedge['measured range'][e]:.3f}", f"{wedge['missing wedge'][e]:.3f}"])
    print("Q^S: self-consistency at the measured angles, and how much it changes the re-projections")
    table(["element", "deviance of R M", "deviance of Q^S(R M)", "rel. change, measured range", "rel. change, missing wedge"], rows)
    from hyperspy_edxtomo.workflow.figures import rgb_overlay, volume_cuts

    vol.save(out / "qd1_two_step.hspy", overwrite=True)
    volume_cuts(vol, out / "qd1_two_step_full_cuts.png")
    rgb_overlay(vol, out / "qd1_two_step_rgb.png", vol.elements)
    shells_of_dots(vol)
    end_to_end_timing(aligned, out)


def shells_of_dots(vol):
    """Shell coverage of QD1's two whole dots (the crop used above)."""
    dots = vol.isig[CROP[1], CROP[0]]
    particles = dots.find_particles()
    shells = dots.shell_maps(particles=particles, max_particles=2)
    rows = []
    for e, el in enumerate(vol.elements):
        rows.append([el] + [f"{100 * shells.absent(el, p):.1f}" for p in range(len(shells.labels))])
    print(f"QD1 two_step: {len(particles)} particle(s) found; shell maps of the two largest")
    table(["element", *[f"absent % (particle {p + 1})" for p in range(len(shells.labels))]], rows)


def end_to_end_timing(aligned, out):
    """end_to_end's network pass on 3 x 256^3, and the whole plugin call."""
    import torch

    weights = out / "e2e_simulated_Se_S_Zn.pt"
    if not weights.exists():
        train_weights(weights, elements=aligned.elements)
    t0 = time.perf_counter()
    _, inter = aligned.reconstruct("end_to_end", weights=str(weights), show_progressbar=False, return_intermediates=True)
    t_e2e = time.perf_counter() - t0
    model = het.EndToEndModel.load(weights)
    t0 = time.perf_counter()
    model.predict(inter["fbp_denoised"].data, aligned.elements)
    t_net = time.perf_counter() - t0
    print("## end_to_end on 3 x 256^3")
    table(["step", "seconds"], [["network pass T (3 x 256^3)", f"{t_net:.1f}"],
                                ["whole reconstruct(method='end_to_end') (stored Q^D + FBP + T)", f"{t_e2e:.1f}"]])
    print(f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}\n", flush=True)


def wedge(out):
    """Is Q^S right where nothing was measured? Against the true projections of
    the phantom, scaled to the data's dose (least squares), per element."""
    maps = datasets.quantum_dot_element_maps(size=64, seed=1)
    truth = maps.metadata.Simulation.ground_truth.data
    vol, inter = maps.reconstruct("two_step", show_progressbar=False, return_intermediates=True)
    angles = inter["reprojections"].tilts
    true_proj = datasets.project(truth, angles)  # (element, angle, y, x)
    lo, hi = maps.tilts.min(), maps.tilts.max()
    inside = (angles >= lo - 1e-6) & (angles <= hi + 1e-6)
    rows = []
    for e, el in enumerate(maps.elements):
        for name, sel in (("measured range", inside), ("missing wedge", ~inside)):
            t = true_proj[e][sel]
            r = [metrics.nrmse(inter[k].data[e][sel], t) for k in ("reprojections", "enhanced")]
            rows.append([el, name, f"{r[0]:.3f}", f"{r[1]:.3f}", "yes" if r[1] < r[0] else "no"])
    print("## Q^S at measured and unmeasured angles (simulated dot, seed 1): NRMSE against the true projections")
    table(["element", "angles", "MBIR re-projection R M", "Q^S(R M)", "Q^S closer to the truth"], rows)


def main(argv=None):
    global DATA
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("parts", nargs="*", default=["simulated", "wedge", "qd1", "timing"])
    p.add_argument("--out", default="/tmp/edxtomo_bench_deep")
    p.add_argument("--methods", nargs="+", default=None, help="only these methods (simulated, qd1)")
    p.add_argument("--data", type=Path, default=DATA, help="folder holding qd1_element_maps.npz (default ../shared/data)")
    args = p.parse_args(argv)
    DATA = args.data
    if args.methods:
        global ONLY
        ONLY = set(args.methods)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if any(part in ("qd1", "timing") for part in args.parts) and not DATA.is_dir():
        print(f"skipping qd1/timing: {DATA} is absent")
        args.parts = [x for x in args.parts if x == "simulated"]
    for part in args.parts:
        {"simulated": simulated, "qd1": qd1, "timing": timing, "wedge": wedge}[part](out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
