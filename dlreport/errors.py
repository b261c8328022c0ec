"""Errors the stages report as one clear line (what is wrong, with which file, and the fix)."""


class PipelineError(RuntimeError):
    """Bad input or configuration: the message names the file or param and how to fix it."""
