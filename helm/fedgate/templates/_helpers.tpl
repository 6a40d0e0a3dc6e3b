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
{{- if and .Values.persistence.enabled (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) (not (has "ReadWriteMany" .Values.persistence.accessModes)) }}
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
- name: FEDGATE_MASTER_KEY_FILE
  value: /etc/fedgate/secrets/master-key
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
- name: master-key
  mountPath: /etc/fedgate/secrets
  readOnly: true
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}
