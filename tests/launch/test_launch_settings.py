"""Settings precedence and the clear errors for missing or malformed settings and credentials."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from launch_constants import (
    BUCKET,
    IMAGE_URI,
    PROGRAMS,
    REGION,
    REPO_ROOT,
    ROLE_ARN,
    SETTINGS,
)
from ncf_launch.errors import LaunchError
from ncf_launch.settings import Settings, load_config_file

TRAIN = ("train", "--train", "s3://ncf-data/train/")


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "ncf.toml"
    config.write_text(
        '[ncf]\nregion = "eu-west-1"\nbucket = "from-file"\nrole_arn = "arn:aws:iam::'
        '111111111111:role/file"\nprefix = "file-prefix"\n'
    )
    file_values = load_config_file(config)
    environ = {"NCF_BUCKET": "from-env", "NCF_ROLE_ARN": ROLE_ARN, "AWS_REGION": "us-west-2"}
    settings = Settings.resolve({"bucket": "from-flag"}, environ, file_values)
    assert settings.bucket == "from-flag"
    assert settings.role_arn == ROLE_ARN
    assert settings.prefix == "file-prefix"
    assert settings.region == "eu-west-1"  # NCF_REGION unset: the file comes before AWS_REGION
    assert Settings.resolve({}, {"AWS_REGION": "us-west-2"}, {}).region == "us-west-2"


def test_unknown_keys_in_the_file_are_named(tmp_path: Path) -> None:
    config = tmp_path / "ncf.toml"
    config.write_text('[ncf]\nrole = "x"\n')
    with pytest.raises(LaunchError, match=r"unknown key\(s\) \['role'\].*role_arn"):
        load_config_file(config)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"image_uri": IMAGE_URI, "bucket": BUCKET}, "no SageMaker execution role"),
        (
            {"role_arn": "ncf-role", "image_uri": IMAGE_URI, "bucket": BUCKET},
            "malformed role ARN 'ncf-role'",
        ),
        (
            {"role_arn": "arn:aws:iam::12345:role/x", "image_uri": IMAGE_URI, "bucket": BUCKET},
            "malformed role ARN",
        ),
        ({"role_arn": ROLE_ARN, "bucket": BUCKET}, "no image URI"),
        (
            {"role_arn": ROLE_ARN, "image_uri": "ncf-sagemaker:cpu", "bucket": BUCKET},
            "malformed image URI 'ncf-sagemaker:cpu'",
        ),
        (
            {
                "role_arn": ROLE_ARN,
                "bucket": BUCKET,
                "image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ncf-sagemaker:cpu",
            },
            "is in eu-west-1, but the jobs run in us-east-1",
        ),
        ({"role_arn": ROLE_ARN, "image_uri": IMAGE_URI}, "no S3 bucket"),
        (
            {"role_arn": ROLE_ARN, "image_uri": IMAGE_URI, "bucket": "A_Bucket"},
            "malformed S3 bucket name",
        ),
    ],
    ids=[
        "no-role",
        "role-not-arn",
        "role-short-account",
        "no-image",
        "image-not-ecr",
        "image-other-region",
        "no-bucket",
        "bad-bucket",
    ],
)
def test_bad_settings_fail_before_any_call(ncf, no_credentials, flags, message) -> None:
    argv = [*TRAIN, "--region", REGION, "--dry-run"]
    for name, value in flags.items():
        argv += [f"--{name.replace('_', '-')}", value]
    result = ncf(*argv)
    assert result.code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_missing_region_is_explained(ncf, no_credentials, monkeypatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    result = ncf("list")
    assert result.code == 2
    assert "no AWS region" in result.stderr


def test_no_credentials_is_a_clear_error(ncf, no_credentials) -> None:
    result = ncf(
        *TRAIN,
        *SETTINGS,
    )
    assert result.code == 2
    assert "no AWS credentials found" in result.stderr


def test_bad_channel_and_spot_settings(ncf, no_credentials) -> None:
    common = (
        *SETTINGS,
        "--dry-run",
    )
    result = ncf("train", "--train", "/data/train", *common)
    assert result.code == 2 and "expected an s3://bucket/key URI" in result.stderr
    result = ncf(*TRAIN, *common, "--spot", "--max-runtime", "7200", "--max-wait", "3600")
    assert result.code == 2 and "--max-wait (3600 s) must be at least" in result.stderr
    result = ncf(
        "deploy", *common, "--model-data", "s3://ncf-data/m.tar.gz", "--instance-type", "c5.xlarge"
    )
    assert result.code == 2 and "expected e.g. ml.c5.xlarge" in result.stderr


def test_every_command_has_help() -> None:
    for command in ("train", "tune", "deploy", "invoke", "batch", "cleanup", "list"):
        result = subprocess.run(
            [*PROGRAMS["ncf"], command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "--region" in result.stdout and "--dry-run" in result.stdout


class TestBuildAndPush:
    script = str(REPO_ROOT / "scripts" / "build_and_push.sh")

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.script, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **(env or {})},
            check=False,
        )

    def test_help(self) -> None:
        result = self.run("--help")
        assert result.returncode == 0
        assert "--flavor cpu|gpu" in result.stdout and "--dry-run" in result.stdout

    def test_bad_arguments(self) -> None:
        assert self.run("--flavor", "tpu").returncode == 2
        assert "unknown argument" in self.run("--push-it").stderr

    @pytest.mark.slow
    def test_dry_run_prints_the_commands_with_the_account_from_sts(self, aws_env) -> None:
        result = self.run(
            "--dry-run",
            "--flavor",
            "gpu",
            "--region",
            "us-east-1",
            "--base-image",
            "local/python:3.11",
            env=aws_env.env,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ncf-sagemaker:gpu"
        assert lines[-1] == uri
        assert any("aws ecr create-repository" in line for line in lines)
        assert any("get-login-password" in line and "docker login" in line for line in lines)
        build = next(line for line in lines if "docker buildx build" in line)
        assert "--platform linux/amd64" in build
        assert "FLAVOR=gpu" in build and "BASE_IMAGE=local/python:3.11" in build
        assert f"+ docker push {uri}" in lines

    @pytest.mark.slow
    def test_china_regions_use_the_amazonaws_com_cn_domain(self, aws_env) -> None:
        result = self.run("--dry-run", "--region", "cn-north-1", env=aws_env.env)
        assert result.returncode == 0, result.stderr
        uri = result.stdout.splitlines()[-1]
        assert uri.endswith(".dkr.ecr.cn-north-1.amazonaws.com.cn/ncf-sagemaker:cpu"), uri

    def test_no_credentials_is_a_clear_error(self, tmp_path: Path) -> None:
        env = {
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "AWS_SESSION_TOKEN": "",
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        result = subprocess.run(
            [self.script, "--region", "us-east-1"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**clean, **env},
            check=False,
        )
        assert result.returncode == 2
        assert "no usable AWS credentials" in result.stderr
