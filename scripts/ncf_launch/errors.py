"""The one error type the CLI turns into a short message and exit code 2."""


class LaunchError(Exception):
    """A user-fixable problem: a missing setting, a malformed ARN or URI, no credentials."""
