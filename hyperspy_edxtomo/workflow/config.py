"""The options of :func:`~hyperspy_edxtomo.workflow.pipeline.run_pipeline`, typed and checked before any work.

A :class:`PipelineConfig` is built (and checked) before anything is read or
written: an unknown method, a bad parameter, export format or background
mode raises :class:`PipelineError` at once, never after a long step.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from hyperspy_edxtomo.alignment.api import Method
from hyperspy_edxtomo.base.errors import InputError, InputTypeError
from hyperspy_edxtomo.denoising.api import get_denoiser
from hyperspy_edxtomo.io.exports import EXPORT_FORMATS, ExportFormat
from hyperspy_edxtomo.plugins.manager import get_algorithm
from hyperspy_edxtomo.reconstruction.api import DEFAULT_METHOD
from hyperspy_edxtomo.signals.volume import ElementVolume

__all__ = ["PipelineConfig", "PipelineError", "BackgroundMode", "ExportFormat", "AlignMethod", "BACKGROUND_MODES",
           "EXPORT_FORMATS", "background_mode", "describe_source"]

#: what ``background=`` accepts: raw counts with the background attached as a term of the forward
#: model (``"model"``, the default), counts minus the background (``"subtract"``), or no background
BackgroundMode = Literal["model", "subtract", "none"]
BACKGROUND_MODES: tuple[str, ...] = get_args(BackgroundMode)


#: what ``align_method=`` names: the alignment's own choices (checked by ``maps.align``)
AlignMethod = Method


class PipelineError(InputError):
    """Bad input for the pipeline; the message names the file or option at fault."""


def background_mode(background: BackgroundMode | bool | None) -> BackgroundMode:
    """``background=`` as one of :data:`BACKGROUND_MODES` (True: ``"model"``; False, None: ``"none"``).

    Examples
    --------
    >>> from hyperspy_edxtomo.workflow.config import background_mode
    >>> background_mode(True), background_mode(False), background_mode("subtract")
    ('model', 'none', 'subtract')
    """
    if background is True:
        return "model"
    if background is False or background is None:
        return "none"
    if isinstance(background, str) and background in BACKGROUND_MODES:
        return background
    raise PipelineError(f"background must be one of {BACKGROUND_MODES} (or True for 'model', False for 'none'), "
                        f"got {background!r}.")


def describe_source(source: Any) -> Any:
    """A source as text for the record: paths as given, a signal by its class and title."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (list, tuple)):
        return [describe_source(s) for s in source]
    title = getattr(getattr(source, "metadata", None), "General", None)
    title = getattr(title, "title", "")
    return f"{type(source).__name__} in memory" + (f": {title}" if title else "")


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """Every option of :func:`~hyperspy_edxtomo.workflow.pipeline.run_pipeline`, checked when built.

    Parameters
    ----------
    out : str or Path
        Output folder. Everything is written into a temporary sibling folder
        and moved into place only when the run has finished (see
        :mod:`hyperspy_edxtomo.io.staging`): an error or Ctrl-C on the way
        leaves an earlier run's results in ``out`` as they were. A finished
        run replaces the earlier run's results as a whole and keeps any other
        file in the folder. An input file inside ``out`` is refused.
    elements : None or list of str
        Chemical symbols, e.g. ``["Se", "S", "Zn"]``; None: from the metadata.
    tilts : None or list of float
        Tilt angles in degrees, one per vendor file; None: the files' stage tilts.
    method : str
        Reconstruction algorithm (``hyperspy_edxtomo.list_algorithms()``).
    parameters : None or dict
        The algorithm's parameters.
    align : bool
        Align the views (``maps.align(align_method)``).
    align_method : {"auto", "xcorr", "com", "axis", "projection_matching"}
    denoiser : str
        ``"none"`` or an installed denoiser (``"deep"``, ``"gaussian"``, ...).
        For ``two_step`` it becomes the algorithm's own ``denoiser`` parameter
        (its Q^D stage) rather than a separate step.
    denoiser_parameters : None or dict
    fsc : bool
        Measure the resolution by Fourier shell correlation of two halves.
    fsc_method : None or str
        Algorithm for the two halves; None: the same method when it is
        ``fbp``/``sirt``/``tv``/``l1`` (its parameters reused, ``lam``
        halved), otherwise ``tv`` (strength chosen per half, 100 iterations).
        See :func:`~hyperspy_edxtomo.analysis.fsc.fsc_halves_parameters`.
    fsc_parameters : None or dict
        Parameters of the halves' reconstructions.
    seed : int
        Seed of the reconstruction (``reconstruct(seed=)``) and of the FSC's
        count split and halves.
    shell_elements : None or list of str
        Elements whose shell maps and coverage are measured; None: all.
    exports : sequence of str
        Extra volume formats among ``mrc``, ``tif``, ``vti``, ``npy``,
        ``zspy`` (any case, with or without the dot; a format asked twice is
        written once).
    background : {"model", "subtract", "none"} or bool
        The X-ray background under the lines (see
        :func:`~hyperspy_edxtomo.workflow.steps.load_input`): ``"model"``
        (default, True) keeps raw counts and attaches the background as a
        term of the forward model; ``"subtract"`` subtracts it; ``"none"``
        (False) ignores it.
    lazy : bool
        Read vendor files lazily.
    overwrite : bool
        Replace the results of an earlier run in ``out``; without it a folder
        holding results raises FileExistsError before any work is done.
    truth : None or ElementVolume
        A ground truth (simulations): correlations and its own shell coverage
        go into the report.
    show_progressbar : None or bool
        HyperSpy progress bars on the long steps; None: HyperSpy's preference.
    verbose : bool
        Show one line per step on standard output (each is a ``logging``
        record of ``hyperspy_edxtomo.workflow`` either way).
    report : bool
        Write ``report.md`` and ``report.html``.

    Raises
    ------
    PipelineError
        A parameter set that is not a dict, an unknown background mode,
        export format, method, denoiser or FSC method, bad parameters (e.g.
        ``lam`` NaN, infinite or not positive), a denoiser given twice to an
        algorithm that denoises itself. The message names the option.

    Examples
    --------
    >>> from hyperspy_edxtomo.workflow.config import PipelineConfig
    >>> config = PipelineConfig(out="qd1", method="sirt", parameters={"iterations": 20}, exports=["MRC", ".tif", "mrc"])
    >>> config.exports, config.background, config.out.name
    (('mrc', 'tif'), 'model', 'qd1')
    >>> PipelineConfig(exports=["docx"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hyperspy_edxtomo.workflow.config.PipelineError: Unknown export format(s) ['docx']: choose among mrc, ...
    """
    out: Path = Path("edxtomo_output")
    elements: Sequence[str] | None = None
    tilts: Sequence[float] | None = None
    method: str = DEFAULT_METHOD
    parameters: dict[str, Any] = field(default_factory=dict)
    align: bool = True
    align_method: AlignMethod = "auto"
    denoiser: str = "none"
    denoiser_parameters: dict[str, Any] = field(default_factory=dict)
    fsc: bool = True
    fsc_method: str | None = None
    fsc_parameters: dict[str, Any] | None = None
    seed: int = 0
    shell_elements: Sequence[str] | None = None
    exports: tuple[ExportFormat, ...] = ()
    background: BackgroundMode = "model"
    lazy: bool = False
    overwrite: bool = False
    truth: ElementVolume | None = None
    show_progressbar: bool | None = None
    verbose: bool = True
    report: bool = True

    def __post_init__(self) -> None:
        # the checks and their messages are those run_pipeline has always made, in the same order
        def put(name, value):
            object.__setattr__(self, name, value)  # frozen: normalised once, here

        put("out", Path(self.out))
        for name in ("parameters", "denoiser_parameters", "fsc_parameters"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise PipelineError(f"{name} must be a dict of NAME: value, got {type(value).__name__} {value!r}.")
        put("parameters", dict(self.parameters or {}))
        put("denoiser_parameters", dict(self.denoiser_parameters or {}))
        if self.fsc_parameters is not None:
            put("fsc_parameters", dict(self.fsc_parameters))
        put("exports", tuple(dict.fromkeys(e.lower().lstrip(".") for e in (self.exports or ()))))  # twice: once
        put("background", background_mode(self.background))
        bad = [e for e in self.exports if e not in EXPORT_FORMATS]
        if bad:
            raise PipelineError(f"Unknown export format(s) {bad}: choose among {', '.join(EXPORT_FORMATS)}.")
        self._check_methods()

    def _check_methods(self) -> None:
        try:
            cls = get_algorithm(self.method)
        except ValueError as err:
            raise PipelineError(f"--method: {err}") from None
        if self.denoiser != "none":
            try:
                get_denoiser(self.denoiser).create(**self.denoiser_parameters)
            except ValueError as err:
                raise PipelineError(f"--denoiser: {err}") from None
        if cls.denoises and self.denoiser != "none" and "denoiser" in self.parameters:
            raise PipelineError(f"{self.method} denoises itself: give its denoiser once, either --denoiser "
                                f"{self.denoiser} or --param denoiser=..., not both.")
        try:
            cls.create(**self.reconstruction_parameters)
        except ValueError as err:
            raise PipelineError(f"--param: {err}") from None
        if self.fsc_method is not None:
            try:
                get_algorithm(self.fsc_method)
            except ValueError as err:
                raise PipelineError(f"--fsc-method: {err}") from None

    @property
    def internal_denoiser(self) -> bool:
        """Whether ``method`` denoises itself (``two_step``): then ``denoiser`` is its parameter, not a step."""

        return bool(get_algorithm(self.method).denoises)

    @property
    def reconstruction_parameters(self) -> dict[str, Any]:
        """What ``maps.reconstruct(method, ...)`` is given.

        ``parameters``, and for an algorithm that denoises itself the
        denoiser and its parameters as its own.
        """
        parameters = dict(self.parameters)
        if self.denoiser != "none" and self.internal_denoiser:
            parameters["denoiser"] = self.denoiser
            if self.denoiser_parameters:
                parameters["denoiser_parameters"] = dict(self.denoiser_parameters)
        return parameters

    def arguments(self, source: Any) -> dict[str, Any]:
        """The call's arguments as the run's record holds them (``source`` and signals described in words).

        The algorithm's parameters are those it is given (with the denoiser of
        an algorithm that denoises itself); the console and report switches
        (``show_progressbar``, ``verbose``, ``report``) are left out.
        """
        skip = ("show_progressbar", "verbose", "report")
        arguments = {"source": describe_source(source)}
        for f in fields(self):
            if f.name not in skip:
                arguments[f.name] = getattr(self, f.name)
        arguments.update(out=str(self.out), parameters=self.reconstruction_parameters,
                         exports=list(self.exports), truth=None if self.truth is None else describe_source(self.truth))
        return arguments

    @classmethod
    def from_options(cls, config: "PipelineConfig | str | os.PathLike | None" = None,
                     **options: Any) -> "PipelineConfig":
        """``config`` with ``options`` replacing its fields (a new one from ``options`` when None).

        A path in place of ``config`` is ``out`` (run_pipeline's second
        argument before there was a PipelineConfig).

        Examples
        --------
        >>> from hyperspy_edxtomo.workflow.config import PipelineConfig
        >>> base = PipelineConfig(method="sirt", fsc=False)
        >>> PipelineConfig.from_options(base, method="fbp").method, PipelineConfig.from_options("run1").out.name
        ('fbp', 'run1')
        """
        if isinstance(config, (str, os.PathLike)):
            if "out" in options:
                raise InputTypeError("run_pipeline() got multiple values for argument 'out'")
            options["out"], config = config, None
        if config is None:
            return cls(**options)
        if not isinstance(config, cls):
            raise InputTypeError(f"config must be a PipelineConfig, got {type(config).__name__}.")
        if not options:
            return config
        given = {f.name: getattr(config, f.name) for f in fields(config)}
        return cls(**{**given, **options})
