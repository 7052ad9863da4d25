"""The plugin contract: what an algorithm or a denoiser is given, and what it returns.

A reconstruction algorithm is a small class::

    from traits.api import Range
    from hyperspy_edxtomo.plugins import ReconstructionAlgorithm

    class MySIRT(ReconstructionAlgorithm):
        name = "my_sirt"
        summary = "SIRT with my twist"
        iterations = Range(1, 100000, 50, desc="number of iterations")

        def reconstruct_slices(self, sinograms, projector, background=None):
            ...  # (B, n_tilts, n_x) -> (B, n_z, n_x)

Every trait of the class is a user parameter: its type, range, default and
``desc`` make the validation, the error messages and the listings of
``list_algorithms()`` and ``edxtomo algorithms``. The package calls an
algorithm with the counts and a :class:`Context` (geometry, pixel size,
background, seed, progress, device) and gets a :class:`ReconstructionResult`
back (volumes, the parameters used, intermediates); a denoiser likewise
returns a :class:`DenoisingResult`. Nothing private passes either way.
"""

import dataclasses
from typing import Any, ClassVar

import numpy as np
from traits.api import Dict, HasStrictTraits, Int, TraitError

from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.private_api import range_bounds
from hyperspy_edxtomo.plugins.slices import reconstruct_elements

__all__ = ["Context", "ReconstructionResult", "DenoisingResult", "ParameterisedMethod", "ReconstructionAlgorithm",
           "Denoiser"]


@dataclasses.dataclass(frozen=True)
class Context:
    """What the package tells a plugin about the data it is given.

    Attributes
    ----------
    elements : tuple of str
        One name per element, in the order of the first axis of the counts.
    tilts_deg : numpy.ndarray
        One angle per view, degrees, ascending.
    pixel_size_nm : float or None
        Pixel size of the maps in nm; None when they are not calibrated.
    seed : int
        Seed for anything random the plugin does (``rng`` makes a generator):
        ``reconstruct(seed=...)``, or a seeded denoiser's ``seed`` parameter;
        the same seed gives the same result on the same device.
    show_progressbar : bool
        Whether to show progress bars (:mod:`hyperspy_edxtomo.base.progress`).
    cuda : bool
        Whether CUDA is to be used (torch; the projector runs there too).
    projector : Projector or None
        Reconstruction only: the projector of the measured geometry
        (:class:`~hyperspy_edxtomo.reconstruction.projector.Projector`).
    batch_size : int or None
        Reconstruction only: slices per batch (memory bound; it may exceed the
        slices there are: then one batch holds them all).
    background : numpy.ndarray or None
        Reconstruction only, for algorithms with ``accepts_background``:
        expected background counts shaped like the counts.
    haadf : numpy.ndarray or None
        Reconstruction only, for algorithms with ``uses_haadf``: the HAADF
        tilt series ``(tilt, y, x)`` float32, checked against the maps (same
        views, pixels and tilts), turned with them; None when there is none.
    haadf_mask : numpy.ndarray or None
        With ``haadf``: True where a HAADF pixel is usable (False where
        saturated); None: all are.
    haadf_volume : numpy.ndarray or None
        Reconstruction only, for algorithms with ``uses_haadf``: a HAADF
        tomogram ``(z, y, x)`` of the volume's shape (e.g. from a HAADF tilt
        series with more tilts than the maps), float32; None when not given.
    """

    elements: tuple
    tilts_deg: np.ndarray
    pixel_size_nm: float | None = None
    seed: int = 0
    show_progressbar: bool = False
    cuda: bool = False
    projector: Any = None
    batch_size: int | None = None
    background: np.ndarray | None = None
    haadf: np.ndarray | None = None
    haadf_mask: np.ndarray | None = None
    haadf_volume: np.ndarray | None = None

    @property
    def device(self):
        """``"cuda"`` or ``"cpu"``."""
        return "cuda" if self.cuda else "cpu"

    def rng(self, offset=0):
        """A new numpy generator seeded with ``seed + offset``."""
        return np.random.default_rng(self.seed + offset)


@dataclasses.dataclass
class ReconstructionResult:
    """What :meth:`ReconstructionAlgorithm.reconstruct_series` returns.

    Attributes
    ----------
    volumes : numpy.ndarray
        ``(element, z, y, x)`` float32.
    parameters : list of dict
        Per element, the parameters used, with what the algorithm chose from
        the data (recorded in the volume's history).
    intermediates : dict
        What a multi-stage algorithm keeps for inspection:
        ``{name: ("maps", array, tilts) | ("volume", array) | ("table", dict) | ("object", anything)}``;
        ``reconstruct(..., return_intermediates=True)`` returns maps and
        volumes as signals, the rest as is.
    """

    volumes: np.ndarray
    parameters: list
    intermediates: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DenoisingResult:
    """What :meth:`Denoiser.denoise_counts` returns.

    Attributes
    ----------
    counts : numpy.ndarray
        Expected counts, the shape of the input (float, >= 0).
    chosen : dict
        Settings the denoiser chose from the data (recorded in the history).
    model : object or None
        A trained model worth keeping (e.g. the count-splitting network).
    """

    counts: np.ndarray
    chosen: dict = dataclasses.field(default_factory=dict)
    model: Any = None


class ParameterisedMethod(HasStrictTraits):
    """Shared by reconstruction algorithms and denoisers: a ``name``, a
    ``summary`` and user parameters declared as traits, validated by
    :meth:`create` and listed by :meth:`describe_parameters`."""

    #: what users pass as ``method=``
    name = None
    #: one line for listings
    summary = ""

    @classmethod
    def create(cls, **parameters):
        """Instantiate with validated parameters; errors name the parameter."""
        known = cls.parameter_names()
        unknown = [k for k in parameters if k not in known]
        if unknown:
            hint = (" The seed of a reconstruction is reconstruct(seed=...) (edxtomo --seed), not a parameter of "
                    "its method." if "seed" in unknown and issubclass(cls, ReconstructionAlgorithm) else "")
            raise InputError(
                f"Unknown parameter(s) {unknown} for method {cls.name!r}; its parameters are: "
                f"{', '.join(known) or 'none'}.{hint}"
            )
        for name, value in parameters.items():
            # traits' Range lets NaN through (every comparison with it is False) and, unbounded, infinity:
            # both would only fail deep inside a solver (a ZeroDivisionError for lam=nan)
            if isinstance(value, (float, np.floating)) and not np.isfinite(value):
                info = cls.describe_parameters()[name]
                raise InputError(
                    f"Bad value {value!r} for parameter {name!r} of method {cls.name!r}: allowed {info['allowed']}, "
                    f"never NaN or infinite ({info['description']})."
                )
        try:
            return cls(**parameters)
        except TraitError as err:
            name = getattr(err, "name", None)
            if name in known:
                info = cls.describe_parameters()[name]
                raise InputError(
                    f"Bad value {parameters.get(name)!r} for parameter {name!r} of method {cls.name!r}: "
                    f"allowed {info['allowed']} ({info['description']})."
                ) from None
            raise InputError(f"Bad parameter for method {cls.name!r}: {err}") from None

    @classmethod
    def parameter_names(cls):
        # traits marked parameter=False (``chosen``, a denoiser's ``model``) are state, not parameters
        traits = cls.class_traits()
        return [n for n in cls.class_editable_traits() if traits[n].parameter is not False]

    @classmethod
    def describe_parameters(cls):
        """``{name: {"default", "description", "allowed"}}`` for listings and docs."""
        out = {}
        for name in cls.parameter_names():
            trait = cls.class_traits()[name]
            out[name] = {
                "default": trait.default,
                "description": trait.desc or "",
                "allowed": _allowed(trait),
            }
        return out

    def parameter_values(self):
        """The parameters of this instance (recorded in the history)."""
        return {name: getattr(self, name) for name in self.parameter_names()}

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.parameter_values().items())
        return f"{type(self).__name__}({params})"


class ReconstructionAlgorithm(ParameterisedMethod):
    """Base class: subclass it, set ``name`` and ``summary``, declare traits.

    Either implement :meth:`reconstruct_slices` (and :meth:`prepare` for
    settings resolved from the data), and the package runs it slice batch by
    slice batch, or override :meth:`reconstruct_series` for algorithms that
    need the whole series at once.
    """

    #: how many neighbouring slices on each side a batch needs (3D
    #: regularisation couples slices along the tilt axis); 0: independent.
    #: A subclass sets its own (``slice_halo = 4``); ``prepare`` may widen it
    #: for the data at hand (``tv`` validates it on the brightest slices)
    slice_halo = Int(0, parameter=False)
    #: True: the algorithm models the X-ray background ``b`` of
    #: ``y ~ Poisson(A x + b)`` and receives it (``context.background``, and
    #: ``background=`` of :meth:`prepare` and :meth:`reconstruct_slices`);
    #: False: when the maps carry a background, the algorithm receives the
    #: maps minus it
    accepts_background = False
    #: True: the algorithm trains networks on the data (slow); the FSC of a
    #: run reconstructs its halves with the default method instead
    learned = False
    #: True: the algorithm runs a denoiser itself (its ``denoiser`` and
    #: ``denoiser_parameters`` parameters take the pipeline's denoiser)
    denoises = False
    #: True: the algorithm uses the HAADF tilt series (``context.haadf``); an
    #: instance may decide by its parameters (a property)
    uses_haadf = False
    #: parameters for a quicker run where a rough volume serves (the FSC halves
    #: of a run that used another method, the demo's halves), e.g. fewer iterations
    quick_parameters: ClassVar[dict] = {}

    #: settings resolved from the data (e.g. ``lam``) by :meth:`prepare` for the
    #: batches to read; not a parameter. They reach the user one way only: in the
    #: result's ``parameters`` (:meth:`parameter_values`), hence the history.
    #: (A denoiser returns its choices in :class:`DenoisingResult` instead.)
    chosen = Dict(parameter=False)

    def parameter_values(self):
        """The parameters of this instance, with what :meth:`prepare` chose
        for automatic settings (recorded in the volume's history)."""
        return {**super().parameter_values(), **self.chosen}

    def reconstruct_series(self, counts, context):
        """Reconstruct every element.

        Parameters
        ----------
        counts : numpy.ndarray
            ``(element, tilt, y, x)`` float32.
        context : Context

        Returns
        -------
        ReconstructionResult

        By default each element is reconstructed on its own, slice batch by
        slice batch (:meth:`prepare`, then :meth:`reconstruct_slices`; see
        :func:`~hyperspy_edxtomo.plugins.slices.reconstruct_elements`).
        """
        volumes, used = reconstruct_elements(self, counts, context, self.name, background=context.background)
        return ReconstructionResult(volumes, used)

    def prepare(self, sinograms, context, background=None):
        """Called once per element with all sinograms ``(n_slices, n_tilts, n_x)``
        and the :class:`Context` (projector, seed, progress) before the batches
        run: resolve data-driven settings here (e.g. an automatic
        regularisation strength) and store them in :attr:`chosen`, so that
        every batch uses the same and they are recorded."""

    def reconstruct_slices(self, sinograms, projector, background=None):
        """Reconstruct a batch: sinograms ``(B, n_tilts, n_x)`` float32 to
        slices ``(B, n_z, n_x)`` float32 (numpy)."""
        raise NotImplementedError


class Denoiser(ParameterisedMethod):
    """Base class of denoisers: subclass it, set ``name`` and ``summary``,
    declare traits, implement :meth:`denoise_counts`."""

    #: True: the method models Poisson counts (a warning for non-integer maps)
    assumes_counts = False
    #: True: the method splits counts binomially (errors for too few counts)
    splits_counts = False
    #: True: the method draws random numbers; it has a ``seed`` parameter
    seeded = False

    def denoise_counts(self, counts, context):
        """Denoise the maps.

        Parameters
        ----------
        counts : numpy.ndarray
            ``(element, tilt, y, x)`` float64, finite, >= 0.
        context : Context

        Returns
        -------
        DenoisingResult
            Expected counts of the same shape (the package rescales every
            map to its raw total), what was chosen, a model if trained.
        """
        raise NotImplementedError


def _allowed(trait):
    handler = trait.handler
    kind = type(handler).__name__
    if kind == "Enum":
        return "one of " + ", ".join(repr(v) for v in handler.values)
    if kind in ("BaseRange", "Range"):
        low, high, exclude_low, exclude_high = range_bounds(handler)
        if high is None and isinstance(low, float):
            return "a positive finite number" if low == 0 and exclude_low else (
                f"a finite number {'>' if exclude_low else '>='} {low}")
        return f"{'>' if exclude_low else '>='} {low}" + (
            f" and {'<' if exclude_high else '<='} {high}" if high is not None else ""
        )
    if kind == "Union":
        return " or ".join(_allowed(t) for t in handler.list_ctrait_instances)
    if kind in ("Bool", "BaseBool"):
        return "True or False"
    try:
        return handler.info()
    except Exception:  # pragma: no cover - exotic trait types
        return kind
