"""User-facing errors.

Anything a user can fix (a bad config value, missing data, an unreadable checkpoint, a device count
that does not fit) raises :class:`UserError` with a one-line message that names what is wrong and
what to do. ``main.py`` prints that line and exits non-zero; the library never falls back silently.
"""


class UserError(Exception):
  """An error the user can fix; the message is one line: what is wrong, and what to do."""


class ConfigError(UserError, ValueError):
  """A config value is missing, misspelt, or out of range."""


class DataError(UserError):
  """A data set is missing, empty, unreadable, or not available offline."""


class CheckpointError(UserError):
  """A checkpoint directory is not an ssljax checkpoint or cannot be restored."""
