"""The built-in reconstruction algorithms, one per module, registered as plugins (``plugins.manager``)."""
