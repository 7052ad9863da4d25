"""``method="auto"``: which alignment stage is accepted, and why.

Starting from "doing nothing" (the identity, or the given rotation), four
stages each propose candidates, from the estimators of
:mod:`~hyperspy_edxtomo.alignment.estimators` run on every source of views
(the HAADF reference images first, as etspy does, then the summed counts):

1. **shifts**: ``com`` and ``xcorr``;
2. **axis offset**: the common-line intercept, the rotation held;
3. **rotation** (skipped with a given ``rotation=``): the common-line
   rotation, the shifts estimated again on the turned views by the accepted
   shift method;
4. **projection matching** from the accepted alignment.

A candidate replaces the alignment accepted so far only when it lowers the
held-out criterion (:class:`~hyperspy_edxtomo.alignment.criterion.HeldOutCriterion`)
by more than ``ACCEPT_SE`` (2) standard errors of the paired difference over
the folds; when several pass, the most preferred source wins unless another
is significantly better. When the views are integer counts, candidates are
estimated on one binomial half of the counts and scored on the other half,
which the estimates never saw; the accepted stages are then estimated again
on all counts (the refit). Every stage is recorded
(:class:`~hyperspy_edxtomo.alignment.result.StageDecision`: candidates,
scores, difference, standard error, accepted, reason) in
``metadata.Tomography.alignment.validation`` and in one ``logging`` line
(logger ``hyperspy_edxtomo.alignment.policy``).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from hyperspy_edxtomo.alignment.criterion import ACCEPT_SE, HeldOutCriterion, Prediction
from hyperspy_edxtomo.alignment.estimators import (
    AxisOffset,
    CentreOfMass,
    CommonLine,
    CrossCorrelation,
    Estimator,
    FixedRotation,
    ProjectionMatching,
)
from hyperspy_edxtomo.alignment.result import Alignment, StageDecision
from hyperspy_edxtomo.alignment.views import prepare_views
from hyperspy_edxtomo.base.counts import count_split, is_counts
from hyperspy_edxtomo.base.progress import progress_bar

# estimate_projection_matching and transform_counts stay importable from here for callers written
# before the split (tests/test_reconstruction.py, benchmarks/bench_robustness.py); new code imports
# them from estimators and transform

__all__ = ["SOURCES", "STAGES", "Step", "Candidate", "AutoPolicy", "auto", "validate_single_method", "logger"]

# the name users filter on (docs/alignment.rst); every decision of the alignment stage is logged here
logger = logging.getLogger("hyperspy_edxtomo.alignment.policy")

#: where ``auto`` estimates candidates, in order of preference (HAADF first, as etspy does)
SOURCES = ("reference_images", "summed_counts")
#: the stages of ``auto``, in order
STAGES = ("shifts", "axis offset", "rotation", "projection matching")
#: the shift estimators of the shifts stage, in order of preference
SHIFT_ESTIMATORS = (CentreOfMass(), CrossCorrelation())


class Step(NamedTuple):
    """One estimator run on one source of views; a candidate's recipe is a list of steps."""

    source: str
    estimator: Estimator


@dataclass
class Candidate:
    """An alignment ``auto`` may accept: how it was made (``steps``, replayed on all counts by
    the refit), the alignment (binned pixels) and its held-out predictions."""

    label: str
    estimated_on: str
    steps: list[Step]
    alignment: Alignment
    prediction: Prediction

    @property
    def shift_step(self) -> Step | None:
        """The last shift estimate of the recipe: the one the rotation stage repeats on turned views."""
        return next((s for s in reversed(self.steps) if isinstance(s.estimator, (CentreOfMass, CrossCorrelation))),
                    None)


class AutoPolicy:
    """``auto``'s stages on the prepared views (``sources``: name -> binned ``(tilt, y, x)``).

    Shifts are in binned pixels inside (``b`` raw pixels each); the criterion
    is given raw pixels.
    """

    def __init__(self, criterion: HeldOutCriterion, sources: dict[str, np.ndarray], tilts: np.ndarray, b: int,
                 rotation: float | None, pm_iterations: int, tol_px: float):
        self.criterion, self.sources, self.tilts, self.b = criterion, sources, tilts, b
        self.rotation_given = rotation is not None
        self.rotation0 = 0.0 if rotation is None else float(rotation)
        self.projection_matching = ProjectionMatching(max_iter=pm_iterations, tol_px=tol_px)
        label = "identity (doing nothing)" if rotation is None else f"given rotation {rotation:+.2f} deg"
        start = self.start_alignment()
        self.start = self.current = Candidate(label, "none", [], start, self.predict(start))
        self.decisions: list[StageDecision] = []

    def start_alignment(self) -> Alignment:
        return Alignment.identity(len(self.tilts), self.rotation0)

    def predict(self, alignment: Alignment) -> Prediction:
        return self.criterion.predict(alignment.rotation_deg, alignment.shift_y_px * self.b,
                                      alignment.shift_x_px * self.b)

    def replay(self, steps: list[Step], sources: dict[str, np.ndarray]) -> Alignment:
        """The alignment ``steps`` give from the start on ``sources`` (the refit: on all counts)."""
        alignment = self.start_alignment()
        for step in steps:
            alignment = step.estimator.estimate(sources[step.source], self.tilts, alignment)
        return alignment

    def candidate(self, label: str, source: str, step: Step) -> Candidate:
        """The current alignment followed by ``step`` (what replaying the current steps and ``step``
        on these sources gives: the estimators are deterministic)."""
        alignment = step.estimator.estimate(self.sources[step.source], self.tilts, self.current.alignment)
        return Candidate(label, source, self.current.steps + [step], alignment, self.predict(alignment))

    # -- what each stage proposes: (candidates in order of preference, why there are none) -----
    def propose(self, stage: str) -> tuple[list[Candidate], str | None]:
        return {"shifts": self._propose_shifts, "axis offset": self._propose_axis_offset,
                "rotation": self._propose_rotation, "projection matching": self._propose_projection_matching}[stage]()

    def _propose_shifts(self):
        return [self.candidate(f"{e.name} on {src}", src, Step(src, e)) for src in self.sources
                for e in SHIFT_ESTIMATORS], None

    def _propose_axis_offset(self):
        cands, small = [], []
        for src, views in self.sources.items():
            off = AxisOffset().measure(views, self.tilts, self.current.alignment)
            if abs(off) * self.b < 0.05:
                small.append(src)
                continue
            cands.append(self.candidate(f"axis offset {off * self.b:+.2f} px on {src}", src, Step(src, AxisOffset())))
        return cands, f"the offset is below 0.05 px on {', '.join(small)}"

    def _propose_rotation(self):
        cur, cands, notes = self.current, [], []
        shifts = cur.shift_step or Step(next(iter(self.sources)), CentreOfMass())
        for src, views in self.sources.items():
            rot, _, info = CommonLine().measure(views, self.tilts, cur.alignment)
            if info["passes"] == 0:
                notes.append(f"{src}: fewer than 3 row bands whole in every view")
                continue
            if abs(rot - cur.alignment.rotation_deg) < 0.05:
                notes.append(f"{src}: {rot:+.2f} deg, no change")
                continue
            label = (f"rotation {rot:+.2f} deg on {src} ({info['bands_used']} whole row bands), "
                     f"shifts {shifts.estimator.name} on {shifts.source}")
            # the angle is kept as found here (the refit does not estimate it again); the shifts and
            # the offset are estimated again on the turned views, on the accepted shifts' source
            step = Step(shifts.source, FixedRotation(float(rot), shifts.estimator))
            cands.append(self.candidate(label, src, step))
        return cands, "; ".join(notes)

    def _propose_projection_matching(self):
        return [self.candidate(f"projection matching on {src}", src, Step(src, self.projection_matching))
                for src in self.sources], None

    # -- the decision ---------------------------------------------------------------------------
    def _entry(self, c: Candidate, cmp: dict) -> dict:
        raw = c.alignment.scaled(self.b)
        return {"label": c.label, "estimated_on": c.estimated_on, "rotation_deg": raw.rotation_deg,
                "axis_offset_px": raw.axis_offset_px, "shift_y_px": raw.shift_y_px.tolist(),
                "shift_x_px": raw.shift_x_px.tolist(), "score": cmp["score"], "current_score": cmp["reference_score"],
                "difference": cmp["difference"], "se": cmp["se"], "relative_difference": cmp["relative_difference"]}

    def _choose(self, candidates: list[Candidate], cmps: list[dict]) -> int:
        """The candidate to judge: among those significantly better than the current alignment, the
        most preferred one that is not significantly worse than the best; else the best."""
        chosen = int(np.argmin([m["difference"] for m in cmps]))
        eligible = [i for i, m in enumerate(cmps) if m["better"]]
        if eligible:
            best_ok = min(eligible, key=lambda i: cmps[i]["difference"])
            chosen = best_ok
            for i in eligible:
                if i == best_ok:
                    break
                vs = self.criterion.compare(candidates[i].prediction, candidates[best_ok].prediction)
                if vs["difference"] <= ACCEPT_SE * vs["se"]:
                    chosen = i
                    break
        return chosen

    def decide(self, stage: str, candidates: list[Candidate], skipped: str | None = None) -> bool:
        """Score ``candidates`` against the current alignment, accept one only on a significant gain,
        record the decision and log it; True when one was accepted."""
        cur = self.current
        if not candidates:
            decision = StageDecision(stage, cur.label, reason=skipped or "no candidate")
            logger.info("auto alignment, %s: skipped (%s); keeping %s", stage, decision.reason, cur.label)
            self.decisions.append(decision)
            return False
        same = [c for c in candidates if c.alignment.rotation_deg == cur.alignment.rotation_deg
                and np.allclose(c.alignment.shift_y_px, cur.alignment.shift_y_px, rtol=0, atol=1e-9)
                and np.allclose(c.alignment.shift_x_px, cur.alignment.shift_x_px, rtol=0, atol=1e-9)]
        candidates = [c for c in candidates if not any(c is d for d in same)]
        if not candidates:
            decision = StageDecision(stage, cur.label, reason=(f"no change: {', '.join(c.label for c in same)} "
                                                               "gave the current alignment"))
            logger.info("auto alignment, %s: %s; keeping %s", stage, decision.reason, cur.label)
            self.decisions.append(decision)
            return False
        cmps = [self.criterion.compare(c.prediction, cur.prediction) for c in candidates]
        chosen = self._choose(candidates, cmps)
        m = cmps[chosen]
        accepted = bool(m["better"])
        if not np.isfinite(m["se"]):
            reason = f"too few views held out ({m['n_folds']} folds) to judge a gain"
        elif accepted:
            reason = (f"accepted: held-out deviance lower by {-m['difference']:.1f} +- {m['se']:.1f} "
                      f"(more than {ACCEPT_SE:g} standard errors)")
        elif m["difference"] < 0:
            reason = (f"rejected: a gain of {-m['difference']:.1f} +- {m['se']:.1f} is within {ACCEPT_SE:g} "
                      "standard errors of nothing")
        else:
            reason = f"rejected: held-out deviance higher by {m['difference']:.1f} +- {m['se']:.1f}"
        label = candidates[chosen].label
        self.decisions.append(StageDecision(stage, cur.label, [self._entry(c, x) for c, x in zip(candidates, cmps)],
                                            label, accepted, reason, m["difference"], m["se"]))
        logger.info("auto alignment, %s: %s %s; now %s", stage, label, reason, label if accepted else cur.label)
        if accepted:
            self.current = candidates[chosen]
        return accepted

    def run(self, show: bool = False) -> Candidate:
        """Every stage in turn; the candidate accepted last."""
        stages = [s for s in STAGES if not (s == "rotation" and self.rotation_given)]
        for stage in progress_bar(stages, desc="Validated alignment", show=show):
            self.decide(stage, *self.propose(stage))
        if self.rotation_given:
            # recorded after the run, against the alignment accepted last
            self.decisions.insert(2, StageDecision("rotation", self.current.label,
                                                   reason=f"given: rotation={self.rotation0:+.2f} deg"))
        return self.current


def auto(counts: np.ndarray, refs: np.ndarray | None, tilts: np.ndarray, background: np.ndarray | None, b: int,
         sigma: float | None, pm_iterations: int, tol_px: float, show: bool, rotation: float | None, seed: int,
         score_bin_to: int, refs_note: str | None = None) -> Alignment:
    """The validated chain on the summed counts (and the reference images when given).

    Returns the alignment accepted, in binned pixels (``b`` raw pixels each),
    with ``estimated_on``, ``rotation_estimate_deg`` (the rotation stage's
    chosen estimate, applied or not) and ``validation`` (the record of every
    decision).
    """
    split = is_counts(counts)
    if split:
        est, held = count_split(counts, 0.5, seed=seed)
        est, held = est.astype(np.float64), held.astype(np.float64)
        crit = HeldOutCriterion(counts, tilts, targets=held, background=background,
                                target_background=None if background is None else 0.5 * background,
                                bin_to=score_bin_to)
        scored_on = "a binomial half of the counts that the candidates' estimates never saw"
    else:
        est = counts
        crit = HeldOutCriterion(counts, tilts, background=background, bin_to=score_bin_to)
        scored_on = ("the same views the candidates were estimated on (not integer counts: no count split; "
                     "estimated candidates are favoured by about their number of parameters)")
    s_counts = 1.5 if sigma is None else sigma
    s_refs = 1.0 if sigma is None else sigma
    sources = {}
    if refs is not None:
        sources["reference_images"] = prepare_views(refs, b, s_refs)
    sources["summed_counts"] = prepare_views(est, b, s_counts)
    policy = AutoPolicy(crit, sources, tilts, b, rotation, pm_iterations, tol_px / b)
    final = policy.run(show)

    refit = {"done": False, "reason": "not counts: the estimates already used all the data"}
    if split and any(step.source == "summed_counts" for step in final.steps):
        full = dict(sources, summed_counts=prepare_views(counts, b, s_counts))
        again = policy.replay(final.steps, full)
        prediction = policy.predict(again)
        vs = crit.compare(prediction, final.prediction)
        use = vs["difference"] <= 0
        refit = {"done": True, "used": bool(use), "difference": vs["difference"], "se": vs["se"],
                 "reason": ("the accepted stages estimated again on all counts (rotation kept); it predicts the "
                            "held-out half at least as well" if use else
                            "the accepted stages estimated again on all counts predicted the held-out half worse: "
                            "the validated half-count estimates are kept")}
        if use:
            final = Candidate(final.label + ", refit on all counts", final.estimated_on, final.steps, again,
                              prediction)
    elif split:
        refit["reason"] = "no accepted stage was estimated on the counts"

    vs_id = crit.compare(final.prediction, policy.start.prediction)
    logger.info("auto alignment, result: %s; held-out deviance %+.1f +- %.1f against %s", final.label,
                vs_id["difference"], vs_id["se"], policy.start.label)
    validation = {
        "criterion": crit.description,
        "scored_on": scored_on,
        "count_split_seed": int(seed) if split else -1,
        "accept_rule": f"a candidate replaces the current alignment when the paired difference of held-out deviance "
                       f"over the folds is below -{ACCEPT_SE:g} standard errors",
        "folds": [", ".join(str(int(t)) for t in f) for f in crit.folds],
        "score_binning": int(crit.b),
        "sources": list(sources),
        "stages": [d.to_metadata() for d in policy.decisions],
        "refit": refit,
        "result": final.label,
        "difference_vs_start": vs_id["difference"],
        "se_vs_start": vs_id["se"],
        "start": policy.start.label,
    }
    if refs_note:
        validation["reference_images_note"] = refs_note
    # the rotation that was estimated (the chosen candidate of the rotation stage), applied or not
    rotation_stage = next(d for d in policy.decisions if d.stage == "rotation")
    chosen = [c for c in rotation_stage.candidates if c["label"] == rotation_stage.chosen]
    estimate = chosen[0]["rotation_deg"] if chosen else final.alignment.rotation_deg
    return final.alignment.replace(estimated_on=final.estimated_on, validation=validation,
                                   rotation_estimate_deg=float(estimate))


def validate_single_method(counts: np.ndarray, tilts: np.ndarray, background: np.ndarray | None,
                           alignment: Alignment, score_bin_to: int, method: str) -> dict:
    """Held-out score of a single method's result (raw pixels) against the identity: the
    ``validation`` record, and a warning when it is worse than no alignment (``auto``'s rule
    would not apply it). The warning points two frames above the caller."""
    crit = HeldOutCriterion(counts, tilts, background=background, bin_to=score_bin_to)
    m = crit.compare(crit.predict(alignment.rotation_deg, alignment.shift_y_px, alignment.shift_x_px),
                     crit.predict())
    worse = np.isfinite(m["se"]) and m["difference"] > ACCEPT_SE * m["se"]
    if worse:
        warnings.warn(f"method={method!r} predicts held-out views worse than no alignment at all (held-out deviance "
                      f"higher by {m['difference']:.1f} +- {m['se']:.1f}); method='auto' would not apply it.",
                      stacklevel=4)
    logger.info("%s alignment: held-out deviance %+.1f +- %.1f against no alignment", method, m["difference"], m["se"])
    return {"criterion": crit.description, "scored_on": "the same views the alignment was estimated on",
            "difference_vs_identity": m["difference"], "se": m["se"], "score": m["score"],
            "identity_score": m["reference_score"], "worse_than_identity": bool(worse)}
