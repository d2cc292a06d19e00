#!/usr/bin/env bash
# The scenario suite on a real cluster (kind): the same situations as the local suite
# (`cargo run --release -p e2e --bin scenario -- <name>`), driven with kubectl.
#
#   e2e/kind/run.sh [scenario...]     default: primary-crash secondary-crash switchover
#
# Needs docker, kind, kubectl and helm. Creates (or reuses) the kind cluster $CLUSTER, builds the
# operator image from the repository's Dockerfile, loads it into kind, installs
# charts/receiptdb-operator, then per scenario: a fresh namespace, a ReceiptDbPair, a writer Job
# inserting receipts through the client Service (reconnecting on every error), the fault, the
# waits, and the verdict (acknowledged ids all present on the active member, members equal, the
# Service never selected a stale member). Results go to $OUT (JSON per scenario).
#
# Crashes are real: the postmaster's host pid is found through crictl on the kind node and
# killed with SIGKILL (a `kill 1` inside the container would be ignored: it is PID 1 there).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLUSTER=${CLUSTER:-receiptdb-e2e}
IMAGE=${IMAGE:-receiptdb-operator:e2e}
OUT=${OUT:-$ROOT/target/e2e-kind}
TIMEOUT=${TIMEOUT:-300}
PAIR=orca
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(primary-crash secondary-crash switchover)
mkdir -p "$OUT"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now_ms() { date +%s%3N; }

setup_cluster() {
  if ! kind get clusters | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --wait 180s
  fi
  kubectl config use-context "kind-$CLUSTER" >/dev/null
  log "building $IMAGE"
  docker build -t "$IMAGE" "$ROOT"
  kind load docker-image "$IMAGE" --name "$CLUSTER"
  helm upgrade --install receiptdb-operator "$ROOT/charts/receiptdb-operator" \
    --namespace receiptdb-system --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    --set image.pullPolicy=Never --wait --timeout 5m
}

# jsonpath of the pair's status
st() { kubectl -n "$NS" get rdbp "$PAIR" -o "jsonpath=$1" 2>/dev/null || true; }
in_sync() { st '{.status.conditions[?(@.type=="InSync")].status}'; }

wait_until() { # description, then a shell condition
  local what=$1; shift
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until eval "$*"; do
    if [ "$(date +%s)" -gt "$deadline" ]; then
      log "timed out waiting for $what"; kubectl -n "$NS" get rdbp "$PAIR" -o yaml >&2; return 1
    fi
    sleep 0.5
  done
  log "$what"
}

healthy_on() { [ "$(st '{.status.phase}')" = Healthy ] && [ "$(in_sync)" = True ] && [ "$(st '{.status.activeMember}')" = "$1" ]; }

apply_pair() {
  kubectl create namespace "$NS"
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: receiptdb.io/v1alpha1
kind: ReceiptDbPair
metadata:
  name: $PAIR
spec:
  storage:
    size: 1Gi
  failover:
    failback: ${FAILBACK:-automatic}
YAML
}

start_writer() {
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: batch/v1
kind: Job
metadata:
  name: writer
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      volumes:
      - {name: ca, secret: {secretName: $PAIR-ca}}
      containers:
      - name: writer
        image: docker.io/library/postgres:15-bookworm
        env:
        - name: PGPASSWORD
          valueFrom: {secretKeyRef: {name: $PAIR-superuser, key: password}}
        # TLS, verifying the Service's name against the pair's CA, as clients should.
        - {name: PGSSLMODE, value: verify-full}
        - {name: PGSSLROOTCERT, value: /ca/ca.crt}
        volumeMounts:
        - {name: ca, mountPath: /ca, readOnly: true}
        command: ["bash", "-c"]
        args:
        - |
          export PGHOST=$PAIR PGUSER=postgres PGDATABASE=receipts PGCONNECT_TIMEOUT=2
          until psql -qc "CREATE TABLE IF NOT EXISTS receipts (id bigint PRIMARY KEY, clinic text NOT NULL, amount int NOT NULL, created timestamptz NOT NULL DEFAULT now())"; do sleep 0.2; done
          i=1
          while [ ! -f /tmp/stop ]; do
            if psql -qc "INSERT INTO receipts (id, clinic, amount) VALUES (\$i, 'kita', \$((i % 97 * 10 + 100))) ON CONFLICT (id) DO NOTHING" 2>/dev/null; then
              echo "ACK \$i \$(date +%s%3N)"; i=\$((i + 1)); sleep 0.02
            else
              sleep 0.05   # 57P01/08006/08001 or refused: reconnect (a new psql) and retry the same id
            fi
          done
YAML
  kubectl -n "$NS" wait --for=condition=Ready pod -l job-name=writer --timeout=120s >/dev/null
}

stop_writer() {
  kubectl -n "$NS" exec job/writer -- touch /tmp/stop || true
  sleep 1
  kubectl -n "$NS" logs job/writer | awk '$1 == "ACK" {print $2, $3}' > "$WORK/acks"
}

# The postmaster of <pair>-<member>-0, killed from the kind node with SIGKILL.
crash() {
  local pod="$PAIR-$1-0" node id pid
  node=$(kubectl -n "$NS" get pod "$pod" -o 'jsonpath={.spec.nodeName}')
  id=$(docker exec "$node" crictl ps -q --name postgres --label "io.kubernetes.pod.name=$pod" --label "io.kubernetes.pod.namespace=$NS")
  pid=$(docker exec "$node" crictl inspect --output go-template --template '{{.info.pid}}' "$id")
  docker exec "$node" kill -KILL "$pid"
  FAULT_MS=$(now_ms)
  log "SIGKILL of the $1 postmaster (host pid $pid)"
}

# Record the Service selector and the pair's stale flags every 200 ms (the verdict's input).
watch_service() {
  while true; do
    printf '%s %s %s %s\n' "$(now_ms)" \
      "$(kubectl -n "$NS" get svc "$PAIR" -o 'jsonpath={.spec.selector.receiptdb\.io/member}' 2>/dev/null)" \
      "$(st '{.status.primary.stale}/{.status.primary.fenced}')" \
      "$(st '{.status.secondary.stale}/{.status.secondary.fenced}')"
    sleep 0.2
  done > "$WORK/service" &
  WATCHER=$!
}

psql_on() { # member, sql
  kubectl -n "$NS" exec "$PAIR-$1-0" -c postgres -- psql -U postgres -d receipts -Atc "$2"
}

verdict() {
  local name=$1 active other lost recovery equal stale passed
  kill "$WATCHER" 2>/dev/null || true
  active=$(st '{.status.activeMember}')
  other=$([ "$active" = primary ] && echo secondary || echo primary)
  psql_on "$active" "SELECT id FROM receipts ORDER BY id" > "$WORK/present"
  lost=$(cut -d' ' -f1 "$WORK/acks" | sort -n | comm -23 - <(sort -n "$WORK/present") | wc -l)
  recovery=$(awk -v f="${FAULT_MS:-0}" '$2 <= f {b=$2} $2 > f && !a {a=$2} END {if (a && b) print a - b; else print "null"}' "$WORK/acks")
  sleep 2
  local q="SELECT count(*) || ':' || md5(coalesce(string_agg(id || ',' || amount, ';' ORDER BY id), '')) FROM receipts"
  equal=$([ "$(psql_on "$active" "$q")" = "$(psql_on "$other" "$q")" ] && echo true || echo false)
  # The Service never named a member that status marked stale or fenced at that moment.
  stale=$(awk '($2 == "primary" && $3 ~ /true/) || ($2 == "secondary" && $4 ~ /true/)' "$WORK/service" | wc -l)
  passed=$([ "$lost" = 0 ] && [ "$equal" = true ] && [ "$stale" = 0 ] && echo true || echo false)
  cat > "$OUT/$name.json" <<JSON
{"scenario": "$name", "passed": $passed, "recovery_ms": $recovery, "lost_acknowledged": $lost,
 "in_sync_ms": ${IN_SYNC_MS:-null}, "acknowledged": $(wc -l < "$WORK/acks"), "members_equal": $equal,
 "stale_selections": $stale, "active_member": "$active", "rejoin_method": "$(st '{.status.lastSync.method}')"}
JSON
  cat "$OUT/$name.json"
  [ "$passed" = true ]
}

mark_in_sync() { IN_SYNC_MS=$(( $(now_ms) - FAULT_MS )); }

run_scenario() {
  local name=$1
  NS="e2e-$name"; WORK=$(mktemp -d); FAULT_MS=; IN_SYNC_MS=
  FAILBACK=automatic
  case "$name" in primary-crash-manual-failback|switchover) FAILBACK=manual ;; esac
  log "== $name"
  apply_pair
  wait_until "pair healthy" healthy_on primary
  start_writer; watch_service; sleep 3
  case "$name" in
    primary-crash)
      crash primary
      wait_until "failover to the secondary" '[ "$(st "{.status.activeMember}")" = secondary ]'
      wait_until "primary rejoined, in sync" '[ "$(in_sync)" = True ] && [ "$(st "{.status.primary.stale}")" != true ]'
      mark_in_sync
      wait_until "automatic failback" healthy_on primary ;;
    primary-crash-manual-failback)
      crash primary
      wait_until "in sync on the secondary" '[ "$(in_sync)" = True ] && [ "$(st "{.status.activeMember}")" = secondary ]'
      mark_in_sync
      kubectl -n "$NS" annotate rdbp "$PAIR" receiptdb.io/switchover-to=primary
      wait_until "switched back" healthy_on primary ;;
    secondary-crash)
      crash secondary
      wait_until "InSync lost" '[ "$(in_sync)" != True ]'
      wait_until "secondary back in sync" healthy_on primary; mark_in_sync ;;
    both-crash)
      crash primary; crash secondary
      wait_until "InSync lost" '[ "$(in_sync)" != True ]'
      wait_until "healthy again" '[ "$(st "{.status.phase}")" = Healthy ] && [ "$(in_sync)" = True ]'; mark_in_sync ;;
    switchover)
      FAULT_MS=$(now_ms)
      kubectl -n "$NS" annotate rdbp "$PAIR" receiptdb.io/switchover-to=secondary
      wait_until "switched over" healthy_on secondary; mark_in_sync ;;
    *) log "unknown scenario $name (kind runner: primary-crash, primary-crash-manual-failback, secondary-crash, both-crash, switchover)"; return 2 ;;
  esac
  sleep 3
  stop_writer
  local rc=0
  verdict "$name" || rc=1
  kubectl delete namespace "$NS" --wait=false >/dev/null
  rm -rf "$WORK"
  return $rc
}

setup_cluster
failed=0
for s in "${SCENARIOS[@]}"; do
  run_scenario "$s" || failed=1
done
exit $failed
