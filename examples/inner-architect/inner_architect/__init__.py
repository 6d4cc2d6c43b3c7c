"""The Inner Architect: a small web application used as pipewright's example project."""

__version__ = "1.0.0"
