"""eventsapi: an HTTP service that stores application events per bucket."""

__version__ = "0.1.0"
