"""Errors a training job reports to its user.

``DataError`` and ``ConfigError`` are the user's to fix (bad data, a bad
hyperparameter); ``train`` writes their message as the first line of
``output/failure``, which SageMaker shows as the job's FailureReason. Anything
else is an internal fault and is reported with its traceback.
"""


class UserFacingError(Exception):
    """A fault the user can act on; the message says what to change."""


class DataError(UserFacingError):
    """The input data is missing, unreadable or unusable."""


class ConfigError(UserFacingError):
    """A hyperparameter or setting is unknown or has a bad value."""


class TrainingDivergedError(UserFacingError):
    """The training loss became NaN or infinite; no model is published."""

    def __init__(self, loss: float) -> None:
        super().__init__(
            f"training diverged: the loss became {loss} (not finite), so no model was "
            "written; lower learning_rate, raise the regularization, or check the data for "
            "extreme ratings"
        )


class WorkerLostError(UserFacingError):
    """Another host of a multi-instance job died or stopped answering; no model is published."""

    def __init__(self, hosts: list[str], current_host: str, what: str) -> None:
        self.hosts = hosts
        who = f"host {hosts[0]}" if len(hosts) == 1 else f"one or more of hosts {', '.join(hosts)}"
        super().__init__(
            f"{who} stopped answering during {what} (it failed or was "
            f"stopped; its own log and output/failure say why), so host {current_host} ends "
            "the job without a model; the last checkpoint is where a new job resumes"
        )
