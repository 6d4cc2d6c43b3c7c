"""The Inner Architect, as the deploy tests ship it."""

__version__ = "1.0.0"
