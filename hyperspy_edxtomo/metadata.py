"""Where this extension keeps its information in a signal's metadata.

Everything the extension adds lives under ``metadata.Tomography`` so that it
travels with the signal through ``save``/``hs.load``, ``deepcopy`` and
``as_lazy()``:

``Tomography.history``
    A list of ``{"step", "method", "parameters"}`` dicts, oldest first: every
    processing step that produced the signal (map extraction, alignment,
    denoising, reconstruction) with the parameters it was called with.
``Tomography.tilt_axis``
    ``"rows"``: in every image the tilt axis runs along the rows (vertical,
    the ``y`` axis). Data given with the tilt axis along the columns are
    transposed on the way in.
``Tomography.reference_images``
    (spectrum-image and element-map tilt series) the HAADF/ADF image of each
    tilt, a ``Signal2D`` navigated by the same tilt axis, kept for alignment.
``Tomography.background``
    (element maps) the expected X-ray background counts ``b`` under each
    line, shaped like the maps: the counts are ``y ~ Poisson(A x + b)``, and
    the reconstructions model ``b`` instead of subtracting it.

Element names follow exspy's place, ``metadata.Sample.elements``, but in the
order of the element axis rather than sorted.
"""

import copy
import datetime

import numpy as np

NODE = "Tomography"
TILT_AXIS = "rows"


def plain_record(value):
    """Metadata-friendly copy of ``value``: numpy scalars to Python, numbers in a row to an array.

    Arrays stay arrays (HyperSpy shows them on one line and saves them as
    datasets; a list of numbers shows one line per item, ordered as text).
    """
    if isinstance(value, dict):
        return {str(k): plain_record(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) > 1 and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                                  for v in value):
            return np.asarray(value)
        return [plain_record(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.copy() if value.dtype.kind in "biuf" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def get_history(signal):
    """The processing history of ``signal`` as a list of dicts (a copy)."""
    return copy.deepcopy(list(signal.metadata.get_item(f"{NODE}.history", [])))


def append_history(signal, step, method, parameters):
    """Record one processing step in ``signal``'s metadata (in place)."""
    history = get_history(signal)
    history.append(
        {
            "step": str(step),
            "method": str(method),
            "parameters": plain_record(dict(parameters)),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
        }
    )
    signal.metadata.set_item(f"{NODE}.history", history)
