{{/* Names, labels and the checks every template relies on. */}}

{{- define "fedgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fedgate.fullname" -}}
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

{{- define "fedgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fedgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fedgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fedgate.labels" -}}
helm.sh/chart: {{ include "fedgate.chart" . }}
{{ include "fedgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "fedgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fedgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fedgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* A shared database is configured (PostgreSQL). */}}
{{- define "fedgate.hasDatabase" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{/* The state directory is on a PVC (the default without a database). */}}
{{- define "fedgate.persistent" -}}
{{- if kindIs "bool" .Values.persistence.enabled }}
{{- if .Values.persistence.enabled }}true{{ end }}
{{- else if not (include "fedgate.hasDatabase" .) }}true
{{- end }}
{{- end }}

{{/* The master keyring comes from a Secret (else fedgate's own file on the state volume). */}}
{{- define "fedgate.hasMasterKeySecret" -}}
{{- if or .Values.masterKey.existingSecret .Values.masterKey.value }}true{{ end }}
{{- end }}

{{- define "fedgate.masterKeySecret" -}}
{{- default (include "fedgate.fullname" .) .Values.masterKey.existingSecret }}
{{- end }}

{{- define "fedgate.masterKeySecretKey" -}}
{{- if .Values.masterKey.existingSecret }}{{ .Values.masterKey.existingSecretKey }}{{ else }}master-key{{ end }}
{{- end }}

{{- define "fedgate.databaseSecret" -}}
{{- default (include "fedgate.fullname" .) .Values.database.existingSecret }}
{{- end }}

{{- define "fedgate.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{/* Refuse configurations that would lose or split state. */}}
{{- define "fedgate.validate" -}}
{{- if and (not (include "fedgate.hasDatabase" .)) (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) }}
{{- fail "fedgate: several replicas (replicaCount > 1 or autoscaling) share their state through PostgreSQL: set database.url or database.existingSecret" }}
{{- end }}
{{- if lt (int .Values.server.workers) 1 }}
{{- fail "fedgate: server.workers must be at least 1" }}
{{- end }}
{{- if and (include "fedgate.hasDatabase" .) (not (include "fedgate.hasMasterKeySecret" .)) }}
{{- fail "fedgate: replicas sharing a database must share one master key, which the chart never generates (a re-render would replace it): create a Secret, e.g. kubectl create secret generic fedgate-master --from-literal=master-key=\"$(fedgate vault genkey)\", and set masterKey.existingSecret=fedgate-master" }}
{{- end }}
{{- if and (include "fedgate.persistent" .) (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) (not (has "ReadWriteMany" .Values.persistence.accessModes)) }}
{{- fail "fedgate: persistence with several replicas needs accessModes [ReadWriteMany]" }}
{{- end }}
{{- end }}

{{/* Environment shared by the gateway and the migration init container. */}}
{{- define "fedgate.env" -}}
- name: FEDGATE_CONFIG
  value: /etc/fedgate/config/fedgate.toml
- name: FEDGATE_HOST
  value: "0.0.0.0"
- name: FEDGATE_PORT
  value: "8000"
- name: FEDGATE_WORKERS
  value: {{ .Values.server.workers | quote }}
- name: FEDGATE_LOG_LEVEL
  value: {{ .Values.server.logLevel | quote }}
{{- if include "fedgate.hasMasterKeySecret" . }}
- name: FEDGATE_MASTER_KEY_FILE
  value: /etc/fedgate/secrets/master-key
{{- end }}
# The first admin's key (bootstrapAdmin.existingSecret), never a log; no file: no admin.
- name: FEDGATE_ADMIN_KEY_FILE
  value: /etc/fedgate/admin/api-key
{{- if include "fedgate.hasDatabase" . }}
- name: FEDGATE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "fedgate.databaseSecret" . }}
      key: {{ include "fedgate.databaseSecretKey" . }}
{{- end }}
{{- range .Values.mountSecrets }}
- name: {{ printf "FEDGATE_MOUNT__%s__%s" (upper .mount) (upper .option) }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- end }}

{{- define "fedgate.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: state
  mountPath: /var/lib/fedgate
- name: config
  mountPath: /etc/fedgate/config
  readOnly: true
{{- if include "fedgate.hasMasterKeySecret" . }}
# A directory, not a subPath: the kubelet then updates the file when the Secret changes,
# and the gateways follow it (a key rotation needs no restart).
- name: master-key
  mountPath: /etc/fedgate/secrets
  readOnly: true
{{- end }}
{{- if .Values.bootstrapAdmin.existingSecret }}
- name: admin-key
  mountPath: /etc/fedgate/admin
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}
