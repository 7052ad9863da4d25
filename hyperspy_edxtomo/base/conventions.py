"""Conventions every layer shares: the metadata layout, axes, units, element names.

Where this extension keeps its information in a signal's metadata
-----------------------------------------------------------------

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

from hyperspy_edxtomo.base.errors import InputError

NODE = "Tomography"
#: in every image the tilt axis runs along the rows (the ``y`` axis)
TILT_AXIS = "rows"
#: names of the navigation axes of the tilt series and volumes
TILT = "tilt"
ELEMENT = "element"

_TO_NM = {"nm": 1.0, "µm": 1e3, "um": 1e3, "Å": 0.1, "A": 0.1, "pm": 1e-3, "mm": 1e6, "m": 1e9}


def to_nm(scale, units):
    """``(scale, units)`` in nm when ``units`` is a length, else unchanged (``"px"`` when undefined).

    Examples
    --------
    >>> from hyperspy_edxtomo.base.conventions import to_nm
    >>> to_nm(2.0, "Å")
    (0.2, 'nm')
    """
    if units in _TO_NM:
        return float(scale) * _TO_NM[units], "nm"
    return float(scale), units if units not in (None, "<undefined>") else "px"


def check_elements(elements, n_expected=None):
    """Chemical symbols as a list of str, checked against exspy's element database.

    Raises a ValueError naming unknown or repeated symbols, or a count that
    does not match ``n_expected`` maps.

    Examples
    --------
    >>> from hyperspy_edxtomo.base.conventions import check_elements
    >>> check_elements("Zn")
    ['Zn']
    """
    from exspy.material import elements as elements_db

    if isinstance(elements, str):
        elements = [elements]
    elements = [str(e) for e in elements]
    unknown = [e for e in elements if e not in elements_db]
    if unknown:
        raise InputError(f"Unknown element(s) {unknown}: use chemical symbols such as 'Se', 'S', 'Zn'.")
    if len(set(elements)) != len(elements):
        raise InputError(f"Repeated element names {elements}.")
    if n_expected is not None and len(elements) != n_expected:
        raise InputError(
            f"{len(elements)} element names {elements} for {n_expected} element maps "
            "(counts are shaped (element, tilt, row, column))."
        )
    return elements


def atomic_number(element):
    """Atomic number of a chemical symbol, from exspy's element database.

    Examples
    --------
    >>> from hyperspy_edxtomo.base.conventions import atomic_number
    >>> atomic_number("Se")
    34
    """
    from exspy.material import elements as elements_db

    (element,) = check_elements(element)
    return int(elements_db[element].General_properties.Z)
