"""The one exception type for mistakes a user can make and fix (missing data, bad input, bad config values)."""


class RnnlabError(Exception):
    """A user-fixable error. The message says what went wrong and what to do; the CLI prints it without a traceback."""


def require(module: str, extra: str, purpose: str):
    """Import ``module`` from an optional extra, or say which ``pip install`` brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RnnlabError(
            f"{purpose} needs the {module.split('.')[0]!r} package, which is not installed: "
            f"pip install 'rnnlab[{extra}]' (or pip install -e '.[{extra}]' in a checkout)"
        ) from None
