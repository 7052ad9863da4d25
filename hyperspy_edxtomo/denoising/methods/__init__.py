"""The built-in denoisers, one per module, registered as plugins (``plugins.manager``)."""
