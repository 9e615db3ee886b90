"""Launch NCF training, tuning, endpoints and batch jobs on SageMaker, or rehearse them locally.

The command-line entry is the ``ncf`` console script (:mod:`ncf_launch.cli`); each
subcommand is a small module here that builds the SageMaker requests with the
SDK v3 (training and tuning) or boto3 (hosting), so ``--dry-run`` can print
exactly what would be sent (:mod:`ncf_launch.recording`).
"""

#: Tag put on everything this project creates, so ``ncf list`` and ``ncf cleanup`` can find it.
PROJECT_TAG_KEY = "project"
PROJECT_TAG_VALUE = "ncf-sagemaker"
