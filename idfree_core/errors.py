"""One exception type for bad user input, rendered by the CLI as a single line (exit code 2)."""


class InputError(ValueError):
    """Bad user input: a malformed file, a wrong shape, NaN, an out-of-support value, a bad option.

    The message must be one line that names the offending file or argument and the problem.
    """
