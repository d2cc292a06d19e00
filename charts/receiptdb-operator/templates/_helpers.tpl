{{/*
Chart name, overridable.
*/}}
{{- define "receiptdb-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the objects of this release (63 characters at most: a DNS label).
*/}}
{{- define "receiptdb-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
helm.sh/chart label value.
*/}}
{{- define "receiptdb-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the release.
*/}}
{{- define "receiptdb-operator.labels" -}}
helm.sh/chart: {{ include "receiptdb-operator.chart" . }}
{{ include "receiptdb-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Labels selecting the operator pod (immutable once installed: keep them few).
*/}}
{{- define "receiptdb-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "receiptdb-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount the operator runs as.
*/}}
{{- define "receiptdb-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "receiptdb-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image reference: repository@digest when a digest is given, else
repository:tag (tag defaulting to the chart's appVersion). The Deployment runs it and passes
the same reference to the operator for the init containers of its Jobs.
*/}}
{{- define "receiptdb-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The RBAC rules, shared by the ClusterRole (watchNamespace empty) and the Role (watchNamespace
set). Least privilege: no pods/exec, no pods/log (PostgreSQL is probed over its own protocol and
Job outcomes are read from termination messages), no delete where ownerReferences and garbage
collection already remove objects with their pair. Member volumes are created once and never
changed or deleted by the operator: the StatefulSets' persistentVolumeClaimRetentionPolicy (and,
with reclaimPolicy Delete, an ownerReference to the pair) implements spec.storage.reclaimPolicy.
*/}}
{{- define "receiptdb-operator.rules" -}}
# The pairs themselves: watched to reconcile; patched to remove the one-shot request
# annotations (receiptdb.io/switchover-to, receiptdb.io/sync) once they are handled.
# No create, update or delete: users own their pairs.
- apiGroups: ["receiptdb.io"]
  resources: ["receiptdbpairs"]
  verbs: ["get", "list", "watch", "patch"]
# Status is the operator's only memory (phase, active and authoritative member, failover
# records): written by server-side apply on the status subresource.
- apiGroups: ["receiptdb.io"]
  resources: ["receiptdbpairs/status"]
  verbs: ["patch"]
# Owned objects carry ownerReferences with blockOwnerDeletion; clusters running the
# OwnerReferencesPermissionEnforcement admission plugin (e.g. OpenShift) require this to set them.
# It allows nothing but setting finalizers on pairs.
- apiGroups: ["receiptdb.io"]
  resources: ["receiptdbpairs/finalizers"]
  verbs: ["update"]
# One StatefulSet per member: created and kept in shape by server-side apply; a member is
# fenced by patching it to 0 replicas. Deleted with the pair by garbage collection.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Headless per-member Services and the client Service, whose selector is flipped on failover.
# Deleted with the pair by garbage collection.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Generated superuser and replication password Secrets (created once, random, never logged),
# the pair's TLS Secrets (its CA, created once; the server certificate, patched when
# re-issued; the clients' copy of the CA), and reading user-supplied Secrets referenced by the
# spec (passwords, backup keys, a server certificate) to probe the members. Deleted with the
# pair by garbage collection.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Each member's data claim (data-<pair>-<member>-0), created before the first Job that writes
# the member's data directory (initdb, clone): that Job runs while the StatefulSet is at 0
# replicas, before the StatefulSet controller would create the claim. Create only: an existing
# claim is kept (409), the StatefulSet adopts it by name, and nothing here reads or deletes one.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["create"]
# Member pods: readiness, and the termination message in which a Job's pod reports its outcome
# (read from pod status, so no pods/log). delete: member StatefulSets update OnDelete, and the
# operator restarts a member pod on a changed template itself, the standby first (no exec).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
# initdb, clone, rejoin, sync and restore Jobs. delete: a finished Job is removed once its
# outcome is recorded in status, so the next one of the same kind can run.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The backup CronJob. delete: removed when spec.backup.schedule is unset.
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# One PodDisruptionBudget per pair (maxUnavailable 1 over its two member pods), so a node drain
# or upgrade evicts at most one member at a time and never the last one serving. Created and
# kept in shape by server-side apply (create, patch; get for apply's read); deleted with the
# pair by garbage collection.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch"]
# Events on transitions (failover, sync, backup), through events.k8s.io; patch aggregates
# repeats into one Event series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Leader election: the replicas compete for one Lease in the release's namespace (whatever
watchNamespace is). get to read it, create for the first replica, update for every renewal
and takeover (resourceVersion-guarded replace, so two replicas never both win a round). Only
the Lease named after the release.
*/}}
{{- define "receiptdb-operator.leaderElectionRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "receiptdb-operator.fullname" . | quote }}]
  verbs: ["get", "update"]
{{- end }}

{{/*
Nodes: read (`get`, by name) the node of each member pod, to see it cordoned (`kubectl drain`
cordons before it evicts) and switch clients off the active member ahead of the eviction. No
list or watch, no write.
*/}}
{{- define "receiptdb-operator.nodeRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get"]
{{- end }}
