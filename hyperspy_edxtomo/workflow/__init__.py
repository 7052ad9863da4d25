"""The whole job: input to report.

``config`` (:class:`~hyperspy_edxtomo.workflow.config.PipelineConfig`, every
option, checked before any work), ``steps`` (one function per step, each
returning a small summary), ``results``
(:class:`~hyperspy_edxtomo.workflow.results.Results`), ``report``
(``report.md``, ``report.html``, ``results.json``), ``pipeline``
(:func:`~hyperspy_edxtomo.workflow.pipeline.run_pipeline`: the steps in
order, in a folder written whole) and ``figures``.
"""
