"""How the stages give the signal classes their methods.

The signal classes hold data, axes and metadata only; every operation
(``get_element_maps``, ``align``, ``denoise``, ``reconstruct``,
``shell_maps``, ...) is a function of a stage package that works on the
signal, and that function *is* the method: defined once, one signature, one
docstring. Imports run one way, the stages import the signals, so a stage
marks its function with :func:`signal_method` and it is set on the class
when the stage is imported. ``import hyperspy_edxtomo`` (which HyperSpy does
before it builds one of these signals from a file) imports every stage.
"""

__all__ = ["signal_method"]


def signal_method(*classes, name=None):
    """Decorator: make a stage function a method of ``classes`` (and their lazy twins).

    Parameters
    ----------
    *classes : type
        Signal classes that get the method.
    name : None or str
        The method's name; None: the function's name.

    Returns
    -------
    callable
        The function, unchanged (it stays callable as a function).

    Raises
    ------
    TypeError
        A class already has an attribute of that name that is not this
        function (a HyperSpy method, or another stage's function).

    Examples
    --------
    >>> from hyperspy_edxtomo.signals import ElementVolume
    >>> from hyperspy_edxtomo.signals.methods import signal_method
    >>> class Volume(ElementVolume):
    ...     pass
    >>> @signal_method(Volume)
    ... def n_elements(volume):
    ...     return len(volume.elements)
    >>> Volume.n_elements is n_elements
    True
    """

    def attach(function):
        attr = name or function.__name__
        for cls in classes:
            existing = getattr(cls, attr, None)
            # a method of HyperSpy's, or another stage's, would be shadowed without a word: a programming error
            if existing is not None and not _same_function(existing, function):
                raise TypeError(f"{cls.__name__}.{attr} exists already ({_where(existing)}): the stage function "
                                f"{function.__module__}.{function.__qualname__} needs another name.")
            setattr(cls, attr, function)
        return function

    return attach


def _same_function(a, b):
    # the same definition, also when its module is imported again (a reload, a doctest run)
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == (b.__module__, b.__qualname__)


def _where(obj):
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
