"""Resource names and instance types: generated, checked, and classified (CPU or GPU).

Light on purpose (no AWS SDK): every command and the argument checks use it.
"""

from __future__ import annotations

import re
import time

from ncf_launch.errors import LaunchError

INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
GPU_FAMILIES = ("ml.g4dn", "ml.g5", "ml.g6", "ml.p3", "ml.p4d", "ml.p5")
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def unique_name(base: str) -> str:
    """``base-YYYYmmdd-HHMMSS-mmm``, at most 63 characters as SageMaker requires."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{int(time.time() * 1000) % 1000:03d}"
    return f"{base[: 63 - len(stamp) - 1]}-{stamp}"


def check_name(name: str, what: str) -> str:
    """``name`` if SageMaker accepts it as a resource name."""
    if not NAME_PATTERN.match(name):
        raise LaunchError(
            f"{what} {name!r}: letters, digits and hyphens, at most 63, no leading hyphen"
        )
    return name


def check_instance_type(instance_type: str, local: bool = False) -> str:
    """``ml.<family>.<size>`` (or ``local`` / ``local_gpu`` with ``--local``)."""
    if local:
        return "local_gpu" if instance_type in GPU_FAMILIES or "gpu" in instance_type else "local"
    if not INSTANCE_TYPE_PATTERN.match(instance_type):
        raise LaunchError(f"instance type {instance_type!r}: expected e.g. ml.c5.xlarge")
    return instance_type


def is_gpu(instance_type: str) -> bool:
    """Whether the instance type has an NVIDIA GPU (use the GPU image flavour)."""
    return instance_type.startswith(GPU_FAMILIES)
