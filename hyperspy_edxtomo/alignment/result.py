"""An alignment and its record: what ``metadata.Tomography.alignment`` holds.

:class:`Alignment` is the one place that knows the keys of the record:
:meth:`Alignment.to_metadata` writes them and :meth:`Alignment.from_metadata`
reads them, from an aligned signal, from its metadata node or from a plain
dictionary (those saved by earlier versions included: a record holding only
``shift_x_px``, ``shift_y_px`` and ``rotation_deg`` is a valid alignment, and
keys this version does not know are kept as they are).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hyperspy_edxtomo.base.conventions import NODE
from hyperspy_edxtomo.base.errors import InputError

__all__ = ["ALIGNMENT", "KEYS", "REQUIRED_KEYS", "ORDER", "Alignment", "StageDecision"]

#: where an aligned series keeps its alignment
ALIGNMENT = f"{NODE}.alignment"
#: the keys of the record, in the order they are written
KEYS = ("method", "rotation_given", "rotation_se_deg", "tilts_deg", "view_shape", "binning", "order",
        "views_indistinct", "estimated_on", "validation", "rotation_estimate_deg", "shift_x_px", "shift_y_px",
        "axis_offset_px", "rotation_deg", "projection_matching_iterations", "seconds", "scaled_from_view_shape",
        "resample", "resample_seed")
#: what an alignment cannot do without
REQUIRED_KEYS = ("shift_x_px", "shift_y_px", "rotation_deg")
#: the ``order`` written with every estimated alignment
ORDER = "rotate about the centre by -rotation_deg (tilt axis to vertical), then shift (y, x)"


@dataclass
class StageDecision:
    """What one stage of ``auto`` decided and why: one entry of ``validation["stages"]``.

    ``candidates`` are the scored candidates (plain dictionaries: label,
    source, the candidate's rotation and shifts, its score against the
    current alignment); ``difference`` and ``se`` are those of the chosen
    candidate, None when the stage had nothing to score.
    """

    stage: str
    current: str
    candidates: list[dict] = field(default_factory=list)
    chosen: str = "none"
    accepted: bool = False
    reason: str = ""
    difference: float | None = None
    se: float | None = None

    def to_metadata(self) -> dict:
        record = {"stage": self.stage, "current": self.current, "candidates": self.candidates,
                  "chosen": self.chosen, "accepted": self.accepted, "reason": self.reason}
        if self.difference is not None:
            record.update(difference=self.difference, se=self.se)
        return record

    @classmethod
    def from_metadata(cls, record: dict) -> StageDecision:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(record).items() if k in names})


@dataclass(eq=False)  # fields hold arrays: compare to_metadata() records instead
class Alignment:
    """The rigid transform of every view, and how it was found.

    The transform of view ``t`` rotates it about its centre by
    ``-rotation_deg`` (the tilt axis, found at ``rotation_deg`` degrees
    counter-clockwise from the rows, then runs along the rows), then shifts
    it by ``shift_y_px[t]`` rows and ``shift_x_px[t]`` columns
    (:func:`~hyperspy_edxtomo.alignment.transform.transform_view`). While an
    estimator works, the pixels are those of the (binned) views it is given;
    :meth:`scaled` converts them.

    Every field but the shifts and the rotation may be None: not recorded
    (an alignment given by hand, or saved by an earlier version). A field
    that is None is not written by :meth:`to_metadata`, except
    ``rotation_se_deg``, which every estimated alignment records (None: not
    measured) beside ``rotation_given``.

    Attributes
    ----------
    shift_y_px, shift_x_px : numpy.ndarray
        Shift of every view, rows and columns (pixels), applied after the rotation.
    rotation_deg : float
        In-plane direction of the tilt axis (degrees); the views are turned by minus this.
    axis_offset_px : float or None
        Where the tilt axis was found, in columns from the centre, before the
        shifts (which already include it).
    method : str or None
        ``align``'s method (``"auto"``, ``"xcorr"``, ...).
    estimated_on : str or None
        ``"reference_images"``, ``"summed_counts"`` or ``"none"`` (the identity was kept).
    rotation_given : bool or None
        Whether the rotation was given (``rotation=``) rather than estimated.
    rotation_estimate_deg : float or None
        The rotation that was estimated, applied or not (``auto`` applies it
        only when held-out views confirm it).
    rotation_se_deg : float or None
        Standard error of the rotation from count-split halves (``"axis"`` on counts).
    projection_matching_iterations : int or None
        Projection-matching rounds done.
    validation : dict or None
        How the alignment was validated: for ``auto``, what each stage
        decided and why (``stages``, see :attr:`stages`), the criterion, the
        refit and the result against the start; for a single method with
        ``validate=True``, its score against no alignment; when the views
        held nothing to align on, the reason.
    views_indistinct : str or None
        Why the rotation was not estimated: the views cannot be told apart from Poisson noise.
    tilts_deg, view_shape : list or None
        The tilts and the view shape the alignment was made on (checked when it is applied).
    scaled_from_view_shape : list or None
        The view shape the shifts were scaled from (applied to views of another pixel count).
    binning, order, seconds
        Binning of the views it was estimated on, the order of the transform in words, time taken.
    resample, resample_seed : str, int or None
        How the views were moved (``"counts"`` or ``"bilinear"``) and the seed of the count draws.
    extra : dict
        Keys of the record this version does not know (kept, written back unchanged).

    Examples
    --------
    >>> from hyperspy_edxtomo.alignment import Alignment
    >>> a = Alignment.from_metadata({"shift_x_px": [1.0, 0.0, -1.0], "shift_y_px": [0.0, 0.0, 0.0],
    ...                              "rotation_deg": 2.0})
    >>> a.rotation_deg, a.shift_x_px.tolist(), a.method
    (2.0, [1.0, 0.0, -1.0], None)
    >>> sorted(a.to_metadata())
    ['rotation_deg', 'shift_x_px', 'shift_y_px']
    >>> a.scaled(2).shift_x_px.tolist()
    [2.0, 0.0, -2.0]
    """

    shift_y_px: np.ndarray
    shift_x_px: np.ndarray
    rotation_deg: float = 0.0
    axis_offset_px: float | None = None
    method: str | None = None
    estimated_on: str | None = None
    rotation_given: bool | None = None
    rotation_estimate_deg: float | None = None
    rotation_se_deg: float | None = None
    projection_matching_iterations: int | None = None
    validation: dict | None = None
    views_indistinct: str | None = None
    tilts_deg: list | None = None
    view_shape: list | None = None
    scaled_from_view_shape: list | None = None
    binning: int | None = None
    order: str | None = None
    seconds: float | None = None
    resample: str | None = None
    resample_seed: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        # a record typed or edited by hand is checked here, once, whatever applies it later
        for name in ("shift_y_px", "shift_x_px"):
            try:
                values = np.asarray(getattr(self, name), float)
            except (TypeError, ValueError):
                raise InputError(f"The alignment's {name} must be numbers, one per view.") from None
            if values.ndim != 1:
                raise InputError(f"The alignment's {name} must be a list with one shift per view, got shape "
                                 f"{values.shape}.")
            if not np.all(np.isfinite(values)):
                bad = int(np.flatnonzero(~np.isfinite(values))[0])
                raise InputError(f"The alignment's {name} holds NaN or infinite values (first at view {bad}).")
            setattr(self, name, values)
        if self.shift_y_px.size != self.shift_x_px.size:
            raise InputError(f"The alignment has {self.shift_y_px.size} shift_y_px but {self.shift_x_px.size} "
                             "shift_x_px: one of each per view.")
        try:
            finite = np.isfinite(float(self.rotation_deg))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise InputError(f"The alignment's rotation_deg must be a finite number of degrees, got "
                             f"{self.rotation_deg!r}.")
        self.rotation_deg = float(self.rotation_deg)

    @classmethod
    def identity(cls, n_views: int, rotation_deg: float = 0.0) -> Alignment:
        """No shifts, no axis offset, ``rotation_deg``: where every estimate starts."""
        return cls(shift_y_px=np.zeros(n_views), shift_x_px=np.zeros(n_views), rotation_deg=rotation_deg,
                   axis_offset_px=0.0, projection_matching_iterations=0)

    @property
    def n_views(self) -> int:
        return int(self.shift_x_px.size)

    def replace(self, **changes: Any) -> Alignment:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def scaled(self, factor: float) -> Alignment:
        """The same alignment on views ``factor`` times larger: shifts and axis offset scaled, rotation kept."""
        offset = None if self.axis_offset_px is None else float(self.axis_offset_px * factor)
        return self.replace(shift_y_px=self.shift_y_px * factor, shift_x_px=self.shift_x_px * factor,
                            axis_offset_px=offset)

    @property
    def stages(self) -> list[StageDecision]:
        """What each stage of ``auto`` decided and why (empty for other methods)."""
        records = (self.validation or {}).get("stages", [])
        return [StageDecision.from_metadata(r) for r in records]

    def stage(self, name: str) -> StageDecision | None:
        """The decision of the stage ``name`` (``"shifts"``, ``"axis offset"``, ``"rotation"``,
        ``"projection matching"``), or None."""
        return next((s for s in self.stages if s.stage == name), None)

    def to_metadata(self) -> dict:
        """The record stored in ``metadata.Tomography.alignment``: plain lists, numbers and strings."""
        record = {}
        for key in KEYS:
            value = getattr(self, key)
            if value is None and not (key == "rotation_se_deg" and self.rotation_given is not None):
                continue
            record[key] = value.tolist() if isinstance(value, np.ndarray) else value
        record.update(self.extra)
        return record

    @classmethod
    def from_metadata(cls, source: Any) -> Alignment:
        """Read an alignment from an aligned signal, its ``metadata.Tomography.alignment`` node or a dict.

        Raises
        ------
        ValueError
            When a signal carries no alignment, or the record lacks the shifts or the rotation.
        """
        if isinstance(source, Alignment):
            return source.replace()
        if hasattr(source, "metadata"):
            if not source.metadata.has_item(ALIGNMENT):
                raise InputError(f"{type(source).__name__} carries no metadata.{ALIGNMENT}: align it first.")
            source = source.metadata.get_item(ALIGNMENT)
        if hasattr(source, "as_dictionary"):
            source = source.as_dictionary()
        record = dict(source)
        missing = [k for k in REQUIRED_KEYS if k not in record]
        if missing:
            raise InputError(f"The alignment lacks {missing}.")
        known = {k: record.pop(k) for k in KEYS if k in record}
        return cls(**known, extra=record)
