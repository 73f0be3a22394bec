"""The one exception type for every failure a user can act on."""


class SweepError(Exception):
    """A failure with a message meant for the user: it names the file or key and what is wrong."""
