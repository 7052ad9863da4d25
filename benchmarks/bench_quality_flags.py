"""Quality flags on scenes they were not written for: do they mark what should not be trusted?

The flags of :mod:`hyperspy_edxtomo.analysis.quality` (cut by the box, at the
edge of the reconstruction circle, arc-like, streak-like) have thresholds set
by geometry (outer ring at 0.8 of the radius, half of a particle's voxels,
3x elongation within 30 deg of the beam), not fitted. This benchmark runs what
a user gets with defaults (``maps.align()``, ``reconstruct("tv")``,
``find_particles()``, ``flag_particles``) on the simulated scenes of
``bench_robustness.py`` and on a field of background only, and compares each
particle found with the ground truth:

``real``
    at least half of its voxels fall within 2 voxels of a true particle (after
    the one 3D translation that best matches the truth: alignment cannot tell
    where in the box the object sits);
``artefact``
    otherwise.

Particles the segmentation merges (touching dots of a chain) count as one
real particle: the table gives the truth's own count beside it.

A real particle carrying a flag is a false alarm unless its true counterpart
is itself cut by the box (then the "cut by the box" flag is right); an
artefact without a flag is a miss. The truth is segmented the same way
(``find_particles`` on the ground-truth volume).

Usage::

    python benchmarks/bench_quality_flags.py              # ~5 min on 2 cores
    python benchmarks/bench_quality_flags.py --only edge_cut dot
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reconstruction import table  # noqa: E402  (one table printer for the benchmarks)
from bench_robustness import register_to, scene_cases  # noqa: E402  (the same scenes)

#: a found particle within this many voxels of a true one overlaps it
NEAR_VOXELS = 2


def _labels(particles):
    return np.asarray(particles.labels)


def classify(found, truth_particles, shift):
    """Per found particle: ``(real, true_cut)`` -- whether it lies on a true particle, and whether that
    true particle touches the box."""
    from scipy import ndimage

    from hyperspy_edxtomo.analysis.quality import particle_flags

    t_labels = _labels(truth_particles)
    near = ndimage.binary_dilation(t_labels > 0, iterations=NEAR_VOXELS)
    # which true particle a found voxel lies near (the labels spread by NEAR_VOXELS), once for all
    near_label = ndimage.grey_dilation(t_labels, size=2 * NEAR_VOXELS + 1)
    cut = {lab for lab, info in particle_flags(t_labels).items() if info["touches_box"]}
    f_labels = ndimage.shift(_labels(found), shift, order=0, mode="constant")
    out = {}
    for p in found:
        mask = f_labels == p.label
        if not mask.any():
            out[p.label] = (False, False)
            continue
        real = float(near[mask].mean()) >= 0.5
        hit = np.bincount(near_label[mask].ravel())
        hit[0] = 0
        out[p.label] = (real, bool(real and hit.size > 1 and int(np.argmax(hit)) in cut))
    return out


def _volume_shift(vol, truth):
    from bench_robustness import SCORED

    r = np.stack([vol.element(el).to_numpy()[0] for el in SCORED]).astype(np.float64)
    t = np.stack([truth.element(el).to_numpy()[0] for el in SCORED]).astype(np.float64)
    _, shift = register_to(r, t)
    return shift


#: counts per pixel of the background-only field: five times the continuum of bench_robustness's
#: 2000-count scenes at 64 px (0.2 x 2000 / 64^2)
BACKGROUND_LEVEL = 5 * 0.2 * 2000 / 64**2


def background_only(size, seed=1, level=BACKGROUND_LEVEL):
    """Poisson background with no particle, with its background record (what tv then models)."""
    import hyperspy_edxtomo as het

    tilts = np.arange(-60.0, 61.0, 10.0)
    rng = np.random.default_rng(seed)
    counts = rng.poisson(level, (2, tilts.size, size, size))
    maps = het.element_maps_from_array(counts, tilts, ["Se", "Zn"], pixel_size_nm=0.2,
                                       background=np.full(counts.shape, level, np.float32))
    return maps


def _cases(size, only, seed):
    yield from ((name, maps, truth) for name, _, maps, truth in scene_cases(size, only, seed))
    if not only or "background" in only:
        yield "background only, no particle", background_only(size, seed), None


def run(size, only=None, seed=1):
    from hyperspy_edxtomo.analysis.quality import flag_particles

    rows = []
    for name, maps, truth in _cases(size, only, seed):
        t0 = time.perf_counter()
        vol = maps.align(show_progressbar=False).reconstruct("tv", show_progressbar=False)
        try:
            found = vol.find_particles()
        except ValueError as e:  # no particle: the right answer on background only
            rows.append([name, "-" if truth is None else "?", "0", "-", "-", "-", "-", "-", f"none found ({str(e)[:40]})",
                         f"{time.perf_counter() - t0:.0f}"])
            print(" | ".join(rows[-1]), flush=True)
            continue
        flags = flag_particles(found)
        if truth is None:
            kinds, n_true = {p.label: (False, False) for p in found}, 0
        else:
            true_particles = truth.find_particles()
            kinds, n_true = classify(found, true_particles, _volume_shift(vol, truth)), len(true_particles)
        real = [lab for lab, (r, _) in kinds.items() if r]
        artefacts = [lab for lab, (r, _) in kinds.items() if not r]
        cut_ok = [lab for lab in real if kinds[lab][1] and flags[lab]["touches_box"]]
        cut_missed = [lab for lab in real if kinds[lab][1] and not flags[lab]["touches_box"]]
        false_alarms = [lab for lab in real if not kinds[lab][1] and flags[lab]["flags"]]
        missed = [lab for lab in artefacts if not flags[lab]["flags"]]
        said = sorted({f.split(" (")[0].split(":")[0] for lab in flags for f in flags[lab]["flags"]})
        rows.append([name, str(n_true), str(len(found)), str(len(real)), str(len(artefacts)), f"{len(cut_ok)}/{len(cut_ok) + len(cut_missed)}",
                     str(len(false_alarms)), str(len(missed)), "; ".join(said) or "-",
                     f"{time.perf_counter() - t0:.0f}"])
        print(" | ".join(rows[-1]), flush=True)
    table("Quality flags with defaults (align, tv, find_particles): found particles against the truth",
          ["scene", "true particles", "found", "real", "artefacts", "real and cut by the box: flagged so", "false alarms (real, not cut, "
           "flagged)", "missed (artefact, no flag)", "flags raised", "s"], rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", nargs="+", help="scenes to run (names of bench_robustness's scenes, or 'background')")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    run(args.size, args.only, args.seed)


if __name__ == "__main__":
    main()
