"""The harness's own exceptions: one clear message each, never a crash deep in a stack."""


class SamradbenchError(Exception):
    """Base class: every error the harness raises on purpose."""


class DataError(SamradbenchError):
    """A volume, label or dataset folder that cannot be used as it is (the message names the file)."""


class CheckpointError(SamradbenchError):
    """A model checkpoint that cannot be loaded for the requested architecture."""


class ConfigError(SamradbenchError):
    """An option or generator configuration that is invalid or unsupported."""


class MissingDependencyError(SamradbenchError):
    """An optional package a generator needs is not installed (the message says which)."""


class GenerationError(SamradbenchError):
    """A generator failed on one slice (the message names the slice and the cause)."""
