"""The one exception type for mistakes a user can make and fix (missing data, bad input, bad config values)."""


class RnnlabError(Exception):
    """A user-fixable error. The message says what went wrong and what to do; the CLI prints it without a traceback."""
