"""The one exception type the package raises for bad input."""


class MdllmError(ValueError):
    """Bad input or an impossible request; the message names the file and the problem.

    The command-line interface prints it as a single line and exits with status 1.
    """


def in_file(path, problem: str) -> MdllmError:
    """An error whose message starts with the offending file."""
    return MdllmError(f"{path}: {problem}")
