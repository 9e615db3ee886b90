"""Settings shared by every command: flags, then environment variables, then a TOML file.

Precedence is flags > environment > file. The file is ``$NCF_CONFIG`` or
``./ncf.toml``, with the settings in an ``[ncf]`` table::

    [ncf]
    region = "eu-west-1"
    role_arn = "arn:aws:iam::123456789012:role/ncf-sagemaker"
    image_uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ncf-sagemaker:cpu"
    bucket = "my-ncf-bucket"

Formats are checked here, before any AWS call, so a typo fails in
milliseconds with a message that says what was received and what is expected.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ncf_launch import PROJECT_TAG_KEY, PROJECT_TAG_VALUE
from ncf_launch.errors import LaunchError

#: setting name -> environment variable
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "region": "NCF_REGION",
    "role_arn": "NCF_ROLE_ARN",
    "image_uri": "NCF_IMAGE_URI",
    "bucket": "NCF_BUCKET",
    "prefix": "NCF_PREFIX",
}

ROLE_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
ECR_IMAGE_PATTERN = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>[a-z0-9](?:[a-z0-9._/-]*[a-z0-9])?)"
    r"(?::(?P<tag>[\w][\w.-]{0,127})|@sha256:[0-9a-f]{64})?$"
)
#: Any Docker image reference (for ``--local``, where the image never leaves this machine).
DOCKER_IMAGE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
S3_URI_PATTERN = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](?:/.*)?$")


def config_file_path() -> Path:
    """Where the optional settings file is looked for."""
    return Path(os.environ.get("NCF_CONFIG", "ncf.toml"))


def load_config_file(path: Path | None = None) -> dict[str, str]:
    """The ``[ncf]`` table of the settings file, or ``{}`` when there is no file.

    Raises:
        LaunchError: The file exists but is not valid TOML or has unknown keys.
    """
    path = path or config_file_path()
    if not path.is_file():
        return {}
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise LaunchError(f"settings file {path} is not valid TOML: {error}") from error
    table = document.get("ncf", {})
    unknown = sorted(set(table) - set(ENVIRONMENT_VARIABLES))
    if unknown:
        raise LaunchError(
            f"settings file {path}: unknown key(s) {unknown} in [ncf]; "
            f"valid keys: {sorted(ENVIRONMENT_VARIABLES)}"
        )
    return {key: str(value) for key, value in table.items()}


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one command; empty strings mean "not set"."""

    region: str = ""
    role_arn: str = ""
    image_uri: str = ""
    bucket: str = ""
    prefix: str = "ncf"
    dry_run: bool = False
    local: bool = False
    #: Let the SDK simulate the role's IAM policies first (needs iam:SimulatePrincipalPolicy).
    check_role: bool = True
    tags: tuple[tuple[str, str], ...] = field(
        default_factory=lambda: ((PROJECT_TAG_KEY, PROJECT_TAG_VALUE),)
    )

    @classmethod
    def resolve(
        cls,
        flags: Mapping[str, str | None],
        environ: Mapping[str, str] | None = None,
        file_values: Mapping[str, str] | None = None,
        extra_tags: tuple[tuple[str, str], ...] = (),
        **options: object,
    ) -> Settings:
        """Merge flags > environment > file for each setting in ``ENVIRONMENT_VARIABLES``.

        ``region`` falls back further to ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.
        """
        environ = os.environ if environ is None else environ
        file_values = load_config_file() if file_values is None else file_values
        values: dict[str, object] = {}
        for name, variable in ENVIRONMENT_VARIABLES.items():
            value = flags.get(name) or environ.get(variable) or file_values.get(name)
            if name == "region" and not value:
                value = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
            if value:
                values[name] = value
        settings = cls(**values, **options)  # type: ignore[arg-type]
        if extra_tags:
            settings = cls(
                **{**settings.__dict__, "tags": settings.tags + extra_tags},
            )
        return settings

    # --- checks, each called only by the commands that need the setting -----------------

    def require_region(self) -> str:
        """The region, checked for shape."""
        if not self.region:
            raise LaunchError(
                "no AWS region: pass --region, or set NCF_REGION or AWS_REGION, "
                "or add region to the [ncf] table of ncf.toml"
            )
        if not REGION_PATTERN.match(self.region):
            raise LaunchError(f"malformed region {self.region!r}: expected e.g. 'eu-west-1'")
        return self.region

    def require_role_arn(self) -> str:
        """The execution role ARN, checked for shape (``arn:aws:iam::<12 digits>:role/<name>``)."""
        if not self.role_arn:
            raise LaunchError(
                "no SageMaker execution role: pass --role-arn or set NCF_ROLE_ARN "
                "(e.g. arn:aws:iam::123456789012:role/ncf-sagemaker)"
            )
        if not ROLE_ARN_PATTERN.match(self.role_arn):
            raise LaunchError(
                f"malformed role ARN {self.role_arn!r}: expected "
                "arn:aws:iam::<12-digit account>:role/<role name>"
            )
        return self.role_arn

    def require_image_uri(self) -> str:
        """The image URI: an ECR URI for SageMaker, any local image reference with ``--local``."""
        if not self.image_uri:
            raise LaunchError(
                "no image URI: pass --image-uri or set NCF_IMAGE_URI "
                "(scripts/build_and_push.sh prints it; with --local, a local tag such as "
                "ncf-sagemaker:cpu)"
            )
        if self.local:
            if not DOCKER_IMAGE_PATTERN.match(self.image_uri):
                raise LaunchError(f"malformed Docker image reference {self.image_uri!r}")
            return self.image_uri
        match = ECR_IMAGE_PATTERN.match(self.image_uri)
        if not match:
            raise LaunchError(
                f"malformed image URI {self.image_uri!r}: SageMaker needs an ECR URI "
                "<account>.dkr.ecr.<region>.amazonaws.com/<repository>[:tag]"
            )
        if self.region and match.group("region") != self.region:
            raise LaunchError(
                f"image {self.image_uri} is in {match.group('region')}, but the jobs run in "
                f"{self.region}: SageMaker pulls images from ECR in its own region"
            )
        return self.image_uri

    def require_bucket(self) -> str:
        """The S3 bucket for outputs and checkpoints, checked for shape."""
        if not self.bucket:
            raise LaunchError("no S3 bucket for outputs: pass --bucket or set NCF_BUCKET")
        if not BUCKET_PATTERN.match(self.bucket):
            raise LaunchError(f"malformed S3 bucket name {self.bucket!r}")
        return self.bucket

    def s3_uri(self, *parts: str) -> str:
        """``s3://<bucket>/<prefix>/<parts...>``."""
        keys = "/".join(part.strip("/") for part in (self.prefix, *parts) if part)
        return f"s3://{self.require_bucket()}/{keys}"

    def boto_tags(self) -> list[dict[str, str]]:
        """Tags in the ``[{"Key": ..., "Value": ...}]`` form of the SageMaker API."""
        return [{"Key": key, "Value": value} for key, value in self.tags]


def check_s3_uri(uri: str, what: str) -> str:
    """``uri`` if it is ``s3://bucket/...``, else a ``LaunchError`` naming ``what``."""
    if not S3_URI_PATTERN.match(uri):
        raise LaunchError(f"{what}: expected an s3://bucket/key URI, got {uri!r}")
    return uri
