"""Resource names and instance types: generated, checked, and classified (CPU or GPU).

Light on purpose (no AWS SDK): every command and the argument checks use it.
"""

from __future__ import annotations

import re
import secrets
import time

from ncf_launch.errors import LaunchError

INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
#: Instance families with NVIDIA GPUs: every ``ml.g*`` and ``ml.p*`` one (g4dn, g5, p3...).
GPU_FAMILY_PREFIXES = ("g", "p")
#: Image tags that name a flavour: ``cpu``/``gpu``, or ending ``-cpu``/``-gpu``.
FLAVOUR_TAG_PATTERN = re.compile(r"(?:^|-)(?P<flavour>cpu|gpu)$")
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def unique_name(base: str, max_length: int = 63) -> str:
    """``base-YYYYmmdd-HHMMSS-mmm-xxxxxxxx``, at most ``max_length`` characters.

    The random suffix keeps two launches in the same millisecond (two terminals, a
    script in a loop) from colliding: 32 bits, so 200 names in one millisecond
    collide with a probability of about 5e-6 (16 bits made that about 0.26).
    """
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    stamp += f"-{secrets.token_hex(4)}"
    return f"{base[: max_length - len(stamp) - 1]}-{stamp}"


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
        return "local_gpu" if is_gpu(instance_type) or "gpu" in instance_type else "local"
    if not INSTANCE_TYPE_PATTERN.match(instance_type):
        raise LaunchError(f"instance type {instance_type!r}: expected e.g. ml.c5.xlarge")
    return instance_type


def is_gpu(instance_type: str) -> bool:
    """Whether the instance type has an NVIDIA GPU (use the GPU image flavour)."""
    parts = instance_type.split(".")
    return len(parts) == 3 and parts[0] == "ml" and parts[1].startswith(GPU_FAMILY_PREFIXES)


def image_for_instance_type(image_uri: str, instance_type: str) -> str:
    """The image flavour (CPU or GPU) that fits the instance type.

    An image without a tag gets the flavour tag (``:gpu`` on ``ml.g*``/``ml.p*``,
    ``:cpu`` elsewhere), as ``scripts/build_and_push.sh`` tags them. A flavour tag
    that does not fit is refused: a CPU image on a GPU instance pays GPU prices for
    CPU speed, and a GPU image on a CPU instance does not start. Other tags and
    digests are taken as they are.

    Raises:
        LaunchError: The tag names the other flavour; the message says what to pass.
    """
    wanted = "gpu" if is_gpu(instance_type) or instance_type == "local_gpu" else "cpu"
    last_segment = image_uri.rsplit("/", 1)[-1]
    if "@" in last_segment:
        return image_uri
    if ":" not in last_segment:
        return f"{image_uri}:{wanted}"
    tag = last_segment.rsplit(":", 1)[1]
    match = FLAVOUR_TAG_PATTERN.search(tag)
    if match is None or match.group("flavour") == wanted:
        return image_uri
    other = f"{image_uri[: -len(tag)]}{tag[:-3]}{wanted}"
    kind = "has a GPU" if wanted == "gpu" else "has no GPU"
    raise LaunchError(
        f"image {image_uri} is the {match.group('flavour').upper()} flavour, but {instance_type} "
        f"{kind}: pass --image-uri {other} (scripts/build_and_push.sh --flavor {wanted}) "
        f"or an instance type that fits the image"
    )
