"""Base helpers every layer uses; they import nothing else of the package.

``counts`` (the integer-count test, validation, count splitting, Poisson
deviance), ``provenance`` (processing history, records, the one JSON
serialiser), ``progress`` (bars on standard error), ``errors`` (the error
classes and warnings), ``conventions`` (metadata layout, axes, units,
element names), ``docstrings`` (shared parameter text) and ``private_api``
(the only module touching HyperSpy's private API).
"""
