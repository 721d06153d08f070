{{/*
Names. The full name is the release name when it already contains the chart's name ("logicore"), so a release
called `logicore` gets Services like `logicore-users-headless`, the names docs/discovery.md uses.
*/}}
{{- define "logicore.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "logicore.fullname" -}}
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

{{/* The components, in one place: the gateway, then the services it routes to. */}}
{{- define "logicore.components" -}}
gateway users inventory orders
{{- end }}

{{- define "logicore.services" -}}
users inventory orders
{{- end }}

{{/* Labels of every object; `component` is added per component. */}}
{{- define "logicore.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "logicore.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: logicore
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "users"). */}}
{{- define "logicore.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logicore.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "logicore.componentLabels" -}}
{{ include "logicore.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "logicore.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "logicore.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "logicore.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The chart's own Secret: created when any secret value is not taken from an existing Secret. */}}
{{- define "logicore.secretName" -}}
{{- include "logicore.fullname" . }}
{{- end }}

{{- define "logicore.jwtSecretRef" -}}
name: {{ default (include "logicore.secretName" .) .Values.auth.existingSecret }}
key: {{ ternary .Values.auth.existingSecretKey "jwt-secret" (ne .Values.auth.existingSecret "") }}
{{- end }}

{{- define "logicore.hasDatabasePassword" -}}
{{- if or .Values.database.existingSecret .Values.database.password }}true{{ end }}
{{- end }}

{{- define "logicore.databasePasswordRef" -}}
name: {{ default (include "logicore.secretName" .) .Values.database.existingSecret }}
key: {{ ternary .Values.database.existingSecretPasswordKey "db-password" (ne .Values.database.existingSecret "") }}
{{- end }}

{{- define "logicore.hasRabbitmq" -}}
{{- if or .Values.rabbitmq.existingSecret .Values.rabbitmq.url }}true{{ end }}
{{- end }}

{{- define "logicore.rabbitmqRef" -}}
name: {{ default (include "logicore.secretName" .) .Values.rabbitmq.existingSecret }}
key: {{ ternary .Values.rabbitmq.existingSecretKey "rabbitmq-url" (ne .Values.rabbitmq.existingSecret "") }}
{{- end }}

{{/* Port of a component: (dict "root" $ "component" "users"). */}}
{{- define "logicore.port" -}}
{{- (index .root.Values .component).port }}
{{- end }}

{{/* The headless Service of a backend service, by full DNS name (docs/discovery.md). */}}
{{- define "logicore.headlessHost" -}}
{{- printf "%s-%s-headless.%s.svc.%s" (include "logicore.fullname" .root) .component .root.Release.Namespace .root.Values.clusterDomain }}
{{- end }}

{{/*
Environment every LogiCore process gets: the original deployment's variable names, secrets by reference.
*/}}
{{- define "logicore.commonEnv" -}}
- name: LOGICORE_ENV
  value: {{ .Values.environment | quote }}
- name: SERVICE_HOST
  value: "0.0.0.0"
- name: SERVICE_VERSION
  value: {{ default .Chart.AppVersion .Values.image.tag | quote }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: GATEWAY_JWT_SECRET
  valueFrom:
    secretKeyRef:
      {{- include "logicore.jwtSecretRef" . | nindent 6 }}
{{- if .Values.redis.host }}
- name: REDIS_HOST
  value: {{ .Values.redis.host | quote }}
- name: REDIS_PORT
  value: {{ .Values.redis.port | quote }}
{{- end }}
{{- if .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.tracing.otlpEndpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .Values.tracing.protocol | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.tracing.samplerArg | quote }}
{{- end }}
{{- end }}

{{/* What the services (and the migration) need on top: the database and the event broker. */}}
{{- define "logicore.dataEnv" -}}
- name: DB_HOST
  value: {{ .Values.database.host | quote }}
- name: DB_PORT
  value: {{ .Values.database.port | quote }}
- name: DB_NAME
  value: {{ .Values.database.name | quote }}
- name: DB_USER
  value: {{ .Values.database.user | quote }}
- name: DB_POOL_MAX
  value: {{ .Values.database.poolMax | quote }}
{{- if include "logicore.hasDatabasePassword" . }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "logicore.databasePasswordRef" . | nindent 6 }}
{{- end }}
{{- if include "logicore.hasRabbitmq" . }}
- name: RABBITMQ_URL
  valueFrom:
    secretKeyRef:
      {{- include "logicore.rabbitmqRef" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* Every component's pod-spec settings shared with the migration Job. */}}
{{- define "logicore.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A NetworkPolicy egress rule from {to, ports}: an empty `to` allows those ports to any destination. */}}
{{- define "logicore.egressRule" -}}
- ports:
    {{- toYaml .ports | nindent 4 }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
