#!/bin/bash
# The Action's entry point. GitHub runs it in the workspace with the step's inputs as INPUT_*
# variables, hyphens kept (INPUT_GITHUB-TOKEN, INPUT_DRY-RUN). bash, not sh: dash drops such
# variables before exec. deploy-pipeline-action maps them onto the same run as the CLI.
set -euo pipefail
cd "${GITHUB_WORKSPACE:-.}"
exec deploy-pipeline-action "$@"
