"""hyperspy_edxtomo: STEM-EDX tomography of nanocrystals as a HyperSpy extension.

Spectrum-image tilt series in, calibrated 3D element volumes out, following
Han et al., "Deep learning STEM-EDX tomography of nanocrystals", Nature
Machine Intelligence 3, 267 (2021).

The package is layered (``docs/architecture.rst``): ``base`` helpers, the
``signals``, the ``plugins`` contract, the stages (``io``, ``extraction``,
``alignment``, ``deep``, ``denoising``, ``reconstruction``, ``analysis``),
``datasets``, ``workflow`` and ``cli``. Importing the package imports the
stages, which give the signal classes their methods.
"""

# the stages give the signal classes their methods (signals.methods.signal_method)
from hyperspy_edxtomo import alignment, analysis, denoising, extraction, reconstruction  # noqa: F401
from hyperspy_edxtomo.io import exports  # noqa: F401
from hyperspy_edxtomo.io.loading import load_tilt_series
from hyperspy_edxtomo.reconstruction.api import list_algorithms
from hyperspy_edxtomo.signals import (
    EDXTiltSeries,
    ElementMapTiltSeries,
    ElementVolume,
    LazyEDXTiltSeries,
    LazyElementMapTiltSeries,
    LazyElementVolume,
    element_maps_from_array,
    stack_tilts,
    tilt_series_from_array,
    volume_from_array,
)

__version__ = "0.1.0"


def __getattr__(name):
    # datasets pulls in simulation code only when asked for
    if name == "datasets":
        import importlib

        return importlib.import_module("hyperspy_edxtomo.datasets")
    if name in ("train_end_to_end", "EndToEndModel"):
        # torch is imported only when the deep methods are used
        from hyperspy_edxtomo.reconstruction import deep_models

        return getattr(deep_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EDXTiltSeries",
    "LazyEDXTiltSeries",
    "ElementMapTiltSeries",
    "LazyElementMapTiltSeries",
    "ElementVolume",
    "LazyElementVolume",
    "element_maps_from_array",
    "tilt_series_from_array",
    "volume_from_array",
    "stack_tilts",
    "load_tilt_series",
    "list_algorithms",
    "train_end_to_end",
    "EndToEndModel",
    "datasets",
]
