"""Errors a user can cause. The CLI reports each as one line on stderr (no traceback); the API raises them
as ValueErrors."""


class ScalingError(ValueError):
    """Bad input: the message names the file, key or column, the value and what was expected."""


class LawError(ScalingError):
    """A law cannot be fitted, loaded or evaluated as asked."""


class ConfigError(ScalingError):
    """A configuration value is missing, unknown, of the wrong type or impossible."""


class TaskError(ScalingError):
    """A task cannot produce what was asked (e.g. a difficulty above its field width)."""


class CheckpointMismatch(ScalingError):
    """A checkpoint made for another run (task, model, seeds, schedule) or by another version."""


class StageFailed(ScalingError):
    """A stage ran but its result is unusable (non-finite loss, divergence)."""
