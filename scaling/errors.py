"""Errors that the CLI reports as one line (no traceback) and the API raises as ValueErrors."""


class ScalingError(ValueError):
    """Bad input: the message names the file, key or column, the value and what was expected."""


class LawError(ScalingError):
    """A law cannot be fitted, loaded or evaluated as asked."""
