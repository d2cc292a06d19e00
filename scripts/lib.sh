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

# The pinned helm version (tools/helm/go.mod; built by scripts/install-deps).
HELM_VERSION=3.22.0
# The Kubernetes release of the local cluster (tools/kube/go.mod).
KUBERNETES_RELEASE=v1.36.3

# The Kubernetes version the chart and CRD are validated against offline.
KUBE_VERSION=1.36.0

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A visible section header.
section() { printf '\n==== %s ====\n' "$*"; }

# kubernetes-validate, through the interpreter that has it, so a pyenv shim that was not
# rehashed or a user-base bin dir missing from PATH does not matter.
kubernetes_validate() {
    python3 -m kubernetes_validate "$@"
}

# The generated CRD files: the top-level copy for `kubectl apply`, and the chart's copy, which
# Helm 3 installs from the chart's crds/ directory.
CRD_FILES=(
    "crds/receiptdbpairs.receiptdb.io.yaml"
    "charts/receiptdb-operator/crds/receiptdbpairs.receiptdb.io.yaml"
)

# Print the CRD as the code generates it (`receiptdb-operator crd`), with a header naming its
# source. Build output goes to stderr, so stdout is the YAML alone.
#
# The binary comes from build_workspace (below), the one build every script shares, so after
# scripts/test this costs seconds.
generate_crd() {
    if ! build_workspace -q >&2; then
        # Another crate may be mid-change; the CRD only needs the operator.
        log "building the workspace failed; building receiptdb-operator alone"
        (cd "$REPO_ROOT" && cargo build -q -p receiptdb-operator --bin receiptdb-operator) >&2 ||
            die "building receiptdb-operator failed"
    fi
    local out
    out="$("$(target_dir)/debug/receiptdb-operator" crd)" ||
        die "'receiptdb-operator crd' failed"
    [[ "$out" == *"kind: CustomResourceDefinition"* ]] ||
        die "'receiptdb-operator crd' printed no CustomResourceDefinition"
    # Written verbatim (the header comment comes from the binary), so the committed files are
    # byte for byte what `receiptdb-operator crd` prints.
    printf '%s\n' "$out"
}

# Build everything the tests, the demo and the scenarios run, in one cargo invocation: the same
# selection everywhere, so dependency features unify the same way each time and nothing is
# compiled twice (a `cargo build -p X` here and a `cargo build -p Y` there each rebuild kube,
# rustls and ring with their own feature sets). nextest then reuses it all.
build_workspace() {
    (cd "$REPO_ROOT" && cargo build --workspace --tests --bins "$@")
}

# The directory cargo builds into.
target_dir() {
    (cd "$REPO_ROOT" && cargo metadata -q --no-deps --format-version 1 |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
}

# The local cluster's state directory (one cluster per machine; see localcluster/README.md).
LOCALCLUSTER_DIR="${LOCALCLUSTER_DIR:-$REPO_ROOT/target/localcluster}"
export LOCALCLUSTER_DIR
