#!/usr/bin/env bash
# test.sh: the whole test suite. Sets up .venv first (scripts/setup.sh), then runs pytest.
#
# Usage: ./scripts/test.sh [pytest arguments]     e.g. ./scripts/test.sh -m 'not docker' -x
# Tests marked `docker` need a Docker engine (../shared/tools/docker-here starts one here);
# without one they are skipped, unless NCF_REQUIRE_DOCKER=1 makes that an error.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
exec .venv/bin/pytest "$@"
