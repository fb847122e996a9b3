"""Errors that the command line reports as one line and a non-zero exit."""


class EdgeMoeError(Exception):
    """Base of every error caused by bad input (config, profile, checkpoint, image...)."""


class ConfigError(EdgeMoeError):
    """A model config or precision profile is unknown or malformed."""


class CheckpointError(EdgeMoeError):
    """A checkpoint cannot be loaded into the model."""


class DataError(EdgeMoeError):
    """A dataset is missing, incomplete, or holds arrays of the wrong size or dtype."""


class UntrainedHeadError(EdgeMoeError):
    """A task's head was not in the checkpoint (left at its initial values) and its outputs
    were asked for without saying that untrained heads are intended."""
