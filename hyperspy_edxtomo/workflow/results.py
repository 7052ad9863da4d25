"""What a run gives back: :class:`Results`, and the :class:`Stopwatch` that times its steps."""

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from hyperspy.signals import Signal1D

from hyperspy_edxtomo.analysis import ParticleList, ShellMaps
from hyperspy_edxtomo.signals import ElementMapTiltSeries, ElementVolume
from hyperspy_edxtomo.workflow.config import PipelineConfig

__all__ = ["Results", "Stopwatch"]

T = TypeVar("T")


@dataclass(eq=False)
class Results(Mapping):
    """The results of :func:`~hyperspy_edxtomo.workflow.pipeline.run_pipeline` (or of ``edxtomo analyse``).

    Also a read-only mapping of its fields, so that ``res["volume"]``,
    ``res["numbers"]``, ``"fsc" in res`` and ``res.get("record")`` work as
    they did when the results were a dict.

    Attributes
    ----------
    out : Path
        The output folder.
    volume : ElementVolume
        The reconstruction (``edxtomo analyse``: the volume analysed).
    maps : None or ElementMapTiltSeries
        The element maps reconstructed from, aligned when aligned (not denoised).
    fsc : None or Signal1D
        The Fourier shell correlation of the two halves; None when skipped or failed.
    particles : None or ParticleList
        None when no particle is found (``numbers["shells"]`` says why).
    shells : None or ShellMaps
        None when no particle can be analysed.
    files : dict
        Name -> path of every file written (where they are once the run is over).
    numbers : dict
        What the report tabulates and ``results.json`` holds (plain JSON types).
    timings : dict
        Seconds per step (``"load and maps"``, ``"pictures"``, ``"align"``,
        ``"denoise"``, ``"reconstruct"``, ``"fsc"``, ``"shells"``,
        ``"exports"``) and ``"total"``.
    record : None or dict
        The run's record (date, command line, arguments, inputs, versions):
        :func:`hyperspy_edxtomo.base.provenance.run_record`.
    config : None or PipelineConfig
        The options of the run.
    steps : dict
        Step name (``"load"``, ``"element maps"``, ``"align"``,
        ``"denoise"``, ``"reconstruct"``, ``"fsc"``, ``"analyse"``,
        ``"figures"``, ``"export"``) -> the summary that step returned, its
        files where they are once the run is over (see
        :mod:`hyperspy_edxtomo.workflow.steps`).

    Examples
    --------
    >>> from pathlib import Path
    >>> from hyperspy_edxtomo.workflow.results import Results
    >>> res = Results(out=Path("run"), volume=None, numbers={"elements": ["Zn"]}, timings={"total": 1.0})
    >>> res["numbers"]["elements"], res.get("record"), "timings" in res
    (['Zn'], None, True)
    """

    out: Path
    volume: ElementVolume | None
    maps: ElementMapTiltSeries | None = None
    fsc: Signal1D | None = None
    particles: ParticleList | None = None
    shells: ShellMaps | None = None
    files: dict[str, Path] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    config: PipelineConfig | None = None
    steps: dict[str, Any] = field(default_factory=dict)

    # -- the mapping over the fields: the results were a dict before they were a class ------------
    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


class Stopwatch:
    """Seconds per step: each lap is the time since the previous one, added to its name's total.

    Examples
    --------
    >>> from hyperspy_edxtomo.workflow.results import Stopwatch
    >>> clock = Stopwatch()
    >>> clock.time("add", sum, [1, 2])
    3
    >>> list(clock.timings), clock.timings["add"] >= 0
    (['add'], True)
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        """Add the time since the previous lap to ``name`` (rounded to 10 ms)."""
        now = time.perf_counter()
        self.timings[name] = round(self.timings.get(name, 0.0) + now - self._last, 2)
        self._last = now

    def time(self, name: str, step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``step(*args, **kwargs)``, its time added to ``name``."""
        result = step(*args, **kwargs)
        self.lap(name)
        return result
