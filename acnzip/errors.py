"""The base class of errors meant for the user (the CLI prints their one-line message)."""


class AcnzipError(ValueError):
    """A problem the user can fix: bad data, a wrong or damaged file, an impossible request."""
