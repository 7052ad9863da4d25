"""Base class of reconstruction algorithms: parameters declared with traits.

An algorithm is a small class::

    from traits.api import Range
    from hyperspy_edxtomo.algorithms import ReconstructionAlgorithm

    class MySIRT(ReconstructionAlgorithm):
        name = "my_sirt"
        summary = "SIRT with my twist"
        iterations = Range(1, 100000, 50, desc="number of iterations")

        def reconstruct_slices(self, sinograms, projector, progress=None):
            ...  # (B, n_tilts, n_x) -> (B, n_z, n_x)

Every trait of the class is a user parameter: its type, range, default and
``desc`` make the validation, the error messages and the listings of
``list_algorithms()`` and ``edxtomo algorithms``.
"""

import numpy as np
from traits.api import Any, HasStrictTraits, TraitError


class ParameterisedMethod(HasStrictTraits):
    """Shared by reconstruction algorithms and denoisers: a ``name``, a
    ``summary`` and user parameters declared as traits, validated by
    :meth:`create` and listed by :meth:`describe_parameters`."""

    #: what users pass as ``method=``
    name = None
    #: one line for listings
    summary = ""
    #: what prepare() resolved from the data, recorded in the history
    _chosen = Any()

    @classmethod
    def create(cls, **parameters):
        """Instantiate with validated parameters; errors name the parameter."""
        known = cls.parameter_names()
        unknown = [k for k in parameters if k not in known]
        if unknown:
            raise ValueError(
                f"Unknown parameter(s) {unknown} for method {cls.name!r}; its parameters are: "
                f"{', '.join(known) or 'none'}."
            )
        for name, value in parameters.items():
            # traits' Range lets NaN through (every comparison with it is False) and, unbounded, infinity:
            # both would only fail deep inside a solver (a ZeroDivisionError for lam=nan)
            if isinstance(value, (float, np.floating)) and not np.isfinite(value):
                info = cls.describe_parameters()[name]
                raise ValueError(
                    f"Bad value {value!r} for parameter {name!r} of method {cls.name!r}: allowed {info['allowed']}, "
                    f"never NaN or infinite ({info['description']})."
                )
        try:
            return cls(**parameters)
        except TraitError as err:
            name = getattr(err, "name", None)
            if name in known:
                info = cls.describe_parameters()[name]
                raise ValueError(
                    f"Bad value {parameters.get(name)!r} for parameter {name!r} of method {cls.name!r}: "
                    f"allowed {info['allowed']} ({info['description']})."
                ) from None
            raise ValueError(f"Bad parameter for method {cls.name!r}: {err}") from None

    @classmethod
    def parameter_names(cls):
        # traits whose names start with "_" are internal state, not parameters
        return [n for n in cls.class_editable_traits() if not n.startswith("_")]

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
        """The parameters of this instance (recorded in the volume's history),
        with what :meth:`prepare` chose for automatic settings."""
        values = {name: getattr(self, name) for name in self.parameter_names()}
        values.update(self.chosen)
        return values

    @property
    def chosen(self):
        """Settings :meth:`prepare` resolved from the data (e.g. ``lam``)."""
        return dict(getattr(self, "_chosen", None) or {})

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.parameter_values().items())
        return f"{type(self).__name__}({params})"


class ReconstructionAlgorithm(ParameterisedMethod):
    """Base class: subclass it, set ``name`` and ``summary``, declare traits."""

    #: how many neighbouring slices on each side a batch needs (3D
    #: regularisation couples slices along the tilt axis); 0: independent
    slice_halo = 0
    #: True: the algorithm models the X-ray background ``b`` of
    #: ``y ~ Poisson(A x + b)`` and receives it (``background=`` of
    #: :meth:`reconstruct_series`, :meth:`prepare` and
    #: :meth:`reconstruct_slices`); False: when the maps carry a background,
    #: the algorithm receives the maps minus it
    accepts_background = False
    #: what a multi-stage algorithm keeps for inspection (see ``intermediates``)
    _intermediates = Any()
    #: pixel size of the maps in nm (None if uncalibrated), set by ``reconstruct``
    _pixel_size_nm = Any()

    def reconstruct_series(self, counts, elements, projector, batch_size=None, show_progressbar=False, **kwargs):
        """Reconstruct every element: ``counts`` (element, tilt, y, x) float32
        to ``(volumes (element, z, y, x), [parameters used per element])``.

        By default each element is reconstructed on its own, slice batch by
        slice batch (:meth:`prepare`, then :meth:`reconstruct_slices`).
        Algorithms that need the whole series at once (the elements jointly,
        whole projection images, networks) override this method instead.
        With :attr:`accepts_background`, ``background=`` (expected background
        counts shaped like ``counts``) is passed when the maps carry one.
        """
        from .reconstruction import reconstruct_elements

        return reconstruct_elements(self, counts, elements, projector, batch_size, show_progressbar, self.name,
                                    background=kwargs.get("background"))

    @property
    def intermediates(self):
        """Intermediate results of the last :meth:`reconstruct_series`:
        ``{name: ("maps", array, tilts) | ("volume", array) | ("table", dict) | ("object", anything)}``;
        ``reconstruct(..., return_intermediates=True)`` returns maps and volumes as signals, the rest as is."""
        return dict(self._intermediates or {})

    def prepare(self, sinograms, projector, show_progressbar=False):
        """Called once per element with all sinograms ``(n_slices, n_tilts, n_x)``
        before the batches run: resolve data-driven settings here (e.g. an
        automatic regularisation strength) so every batch uses the same."""

    def reconstruct_slices(self, sinograms, projector):
        """Reconstruct a batch: sinograms ``(B, n_tilts, n_x)`` float32 to
        slices ``(B, n_z, n_x)`` float32 (numpy)."""
        raise NotImplementedError


def _allowed(trait):
    handler = trait.handler
    kind = type(handler).__name__
    if kind == "Enum":
        return "one of " + ", ".join(repr(v) for v in handler.values)
    if kind in ("BaseRange", "Range"):
        low, high = handler._low, handler._high
        if high is None and isinstance(low, float):
            return "a positive finite number" if low == 0 and handler._exclude_low else (
                f"a finite number {'>' if handler._exclude_low else '>='} {low}")
        return f"{'>' if handler._exclude_low else '>='} {low}" + (
            f" and {'<' if handler._exclude_high else '<='} {high}" if high is not None else ""
        )
    if kind == "Union":
        return " or ".join(_allowed(t) for t in handler.list_ctrait_instances)
    if kind in ("Bool", "BaseBool"):
        return "True or False"
    try:
        return handler.info()
    except Exception:  # pragma: no cover - exotic trait types
        return kind


def positive_lambda_or_auto(value):
    """Validate a regularisation strength: ``"auto"`` or a number > 0."""
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"lam must be 'auto' or a positive number, got {value!r}")
        return value
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"lam must be 'auto' or a positive number, got {value!r}")
    return value
