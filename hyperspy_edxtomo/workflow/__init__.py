"""The whole job: input to report (``pipeline``), figures (``figures``)."""
