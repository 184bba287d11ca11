"""User-facing errors.

Anything the user can fix (a bad path, a malformed file, a typo in a config key) raises
`RgbtadError` with a one-line message that names the file or key and the problem. The CLI
prints it without a traceback and exits non-zero; bugs keep their tracebacks.
"""


class RgbtadError(Exception):
    """An error caused by user input, reported as one clear line."""
