"""The exception hierarchy: every error simrec raises on purpose derives from :class:`SimrecError`.

User errors (bad data, bad config, an output directory that already holds a run) are
:class:`InputError` or :class:`ConfigError`; the CLI prints their one-line message and exits with
status 2, without a traceback.
"""

from __future__ import annotations


class SimrecError(Exception):
    """Root of simrec's exceptions."""


class InputError(SimrecError, ValueError):
    """Bad user data: a missing or malformed file, a missing column, an unknown id.

    The message names the file (and field), what was expected and what was found.
    """


class ConfigError(SimrecError, ValueError):
    """A bad configuration value; the message names the field."""


class OutputExistsError(InputError):
    """The output directory already holds a (complete or unfinished) run."""


class BackendError(SimrecError, RuntimeError):
    """A model backend or recommender failed in a way the run cannot recover from."""
