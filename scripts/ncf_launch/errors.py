"""The error types the CLI turns into a short message and an exit code, never a traceback."""


class LaunchError(Exception):
    """A user-fixable problem: a missing setting, a malformed ARN or URI, no credentials.

    The CLI prints it as ``error: ...`` and exits with code 2.
    """


class JobEndedError(Exception):
    """A job or endpoint that ended Failed or Stopped (or rolled back): says which, and why.

    The CLI prints it as ``error: ...`` and exits with code 1.
    """

    def __init__(self, kind: str, name: str, status: str, reason: str | None) -> None:
        self.kind = kind
        self.name = name
        self.status = status
        self.reason = reason
        super().__init__(f"{kind} {name} ended {status}: {reason or 'no FailureReason given'}")
