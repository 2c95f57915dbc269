{{/*
Names. The operator's objects are <fullname>-<role>; NATS keeps the nats chart's names. The
full name is cut to 50 characters so that every suffix (-webhook-tls) stays within 63.
*/}}
{{- define "nats-tenancy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nats-tenancy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nats-tenancy.controller" -}}{{ include "nats-tenancy.fullname" . }}-controller{{- end }}
{{- define "nats-tenancy.webhook" -}}{{ include "nats-tenancy.fullname" . }}-webhook{{- end }}
{{- define "nats-tenancy.webhookTlsSecret" -}}{{ include "nats-tenancy.fullname" . }}-webhook-tls{{- end }}
{{- define "nats-tenancy.natsConfigSecret" -}}{{ include "nats-tenancy.fullname" . }}-nats-config{{- end }}
{{- define "nats-tenancy.lease" -}}{{ include "nats-tenancy.fullname" . }}-leader{{- end }}
{{- define "nats-tenancy.natsHeadless" -}}{{ .Values.nats.name }}-headless{{- end }}
{{- define "nats-tenancy.testNamespace" -}}{{ default (printf "%s-test" (include "nats-tenancy.fullname" .)) .Values.tests.namespace }}{{- end }}

{{- define "nats-tenancy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "nats-tenancy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: include with (list $ "controller"). */}}
{{- define "nats-tenancy.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "nats-tenancy.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "nats-tenancy.annotations" -}}
{{- with .Values.global.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest; include with an image values block and the root. */}}
{{- define "nats-tenancy.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{ $image.repository }}@{{ $image.digest }}
{{- else -}}
{{ $image.repository }}:{{ default $root.Chart.AppVersion $image.tag }}
{{- end -}}
{{- end }}

{{/* The restricted Pod Security Standard, for every container of the chart. */}}
{{- define "nats-tenancy.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "nats-tenancy.podSettings" -}}
{{- $values := index . 0 -}}
{{- $root := index . 1 -}}
{{- with $root.Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.global.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Spread over nodes unless the user gave constraints: (list values root component). */}}
{{- define "nats-tenancy.topologySpread" -}}
{{- $values := index . 0 -}}
topologySpreadConstraints:
{{- if $values.topologySpreadConstraints }}
  {{- toYaml $values.topologySpreadConstraints | nindent 2 }}
{{- else }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "nats-tenancy.selectorLabels" (list (index . 1) (index . 2)) | nindent 8 }}
{{- end }}
{{- end }}

{{/* The operator's settings, shared by both roles so they agree on every name. */}}
{{- define "nats-tenancy.operatorEnv" -}}
- name: NATS_TENANCY_NAMESPACE
  valueFrom: { fieldRef: { fieldPath: metadata.namespace } }
- name: POD_NAME
  valueFrom: { fieldRef: { fieldPath: metadata.name } }
- name: NATS_TENANCY_OPERATOR_NAME
  value: {{ .Values.operator.name | quote }}
{{- with .Values.operator.nodeOptions }}
- name: NODE_OPTIONS
  value: {{ . | quote }}
{{- end }}
- name: NATS_TENANCY_LOG_LEVEL
  value: {{ .Values.operator.logLevel | quote }}
- name: NATS_TENANCY_NATS_SERVICE
  value: {{ .Values.nats.name | quote }}
- name: NATS_TENANCY_NATS_REPLICAS
  value: {{ .Values.nats.replicas | quote }}
- name: NATS_TENANCY_NATS_CONFIG_SECRET
  value: {{ include "nats-tenancy.natsConfigSecret" . | quote }}
- name: NATS_TENANCY_CLUSTER_DOMAIN
  value: {{ .Values.operator.clusterDomain | quote }}
- name: NATS_TENANCY_WEBHOOK_SERVICE
  value: {{ include "nats-tenancy.webhook" . | quote }}
- name: NATS_TENANCY_WEBHOOK_CONFIG
  value: {{ include "nats-tenancy.fullname" . | quote }}
- name: NATS_TENANCY_WEBHOOK_TLS_SECRET
  value: {{ include "nats-tenancy.webhookTlsSecret" . | quote }}
- name: NATS_TENANCY_WEBHOOK_EXCLUDED_NAMESPACES
  value: {{ join "," .Values.webhook.excludedNamespaces | quote }}
- name: NATS_TENANCY_WEBHOOK_REGISTRATION
  value: ca-bundle
{{- include "nats-tenancy.ceilingEnv" . }}
{{- end }}

{{- /*
The ceilings that are set, as the operator's variables (both roles: the webhook refuses, the
controller holds). int64: numbers from a values file arrive as floats, printed 1e+09.
*/}}
{{- define "nats-tenancy.ceilingEnv" -}}
{{- $c := .Values.ceilings -}}
{{- $js := $c.jetstream | default dict -}}
{{- $all := list
  (list "ENVIRONMENTS_PER_APP" $c.environmentsPerApp)
  (list "APPS_PER_NAMESPACE" $c.appsPerNamespace)
  (list "CONNECTIONS" $c.connections)
  (list "PAYLOAD" $c.payload)
  (list "SUBSCRIPTIONS" $c.subscriptions)
  (list "JETSTREAM_MEMORY" $js.memory)
  (list "JETSTREAM_STORAGE" $js.storage)
  (list "JETSTREAM_STREAMS" $js.streams)
  (list "JETSTREAM_CONSUMERS" $js.consumers) -}}
{{- range $all }}
{{- if not (kindIs "invalid" (index . 1)) }}
- name: NATS_TENANCY_MAX_{{ index . 0 }}
  value: {{ index . 1 | int64 | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nats-tenancy.probes" -}}
livenessProbe:
  httpGet: { path: /healthz, port: health }
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: { path: /readyz, port: health }
  periodSeconds: 2
  failureThreshold: 2
{{- end }}

{{- /*
NATS_EXTERNAL_URL of an exposed NATS: the url given, or the first name with the port outside
clients reach (the node port, or the load balancer's port). Refuses what would give apps a URL
they cannot verify or reach.
*/}}
{{- define "nats-tenancy.externalUrl" -}}
{{- include "nats-tenancy.outsideUrl" (list . .Values.nats.expose "tls") }}
{{- end }}

{{- /* NATS_EXTERNAL_WEBSOCKET_URL, the same way from nats.expose.websocket. */}}
{{- define "nats-tenancy.externalWebsocketUrl" -}}
{{- include "nats-tenancy.outsideUrl" (list . .Values.nats.expose.websocket "wss") }}
{{- end }}

{{- /* Non-empty when the servers listen for WebSocket clients: only exposed, and asked for. */}}
{{- define "nats-tenancy.websocket" -}}
{{- if and .Values.nats.expose.enabled .Values.nats.expose.websocket.enabled }}on{{ end }}
{{- end }}

{{- /* A URL outside clients are given: (list root listenerValues scheme). */}}
{{- define "nats-tenancy.outsideUrl" -}}
{{- $root := index . 0 -}}
{{- $e := index . 1 -}}
{{- $scheme := index . 2 -}}
{{- $expose := $root.Values.nats.expose -}}
{{- $path := ternary "nats.expose" "nats.expose.websocket" (eq $scheme "tls") -}}
{{- if not $expose.names }}
{{- fail "nats.expose.names: list at least one host name or address outside clients connect to (the servers' certificates name them)" }}
{{- end }}
{{- if $e.url -}}
{{ $e.url }}
{{- else }}
{{- $port := $e.port }}
{{- if eq $expose.type "NodePort" }}
{{- $port = $e.nodePort | required (printf "%s.nodePort: choose the node port (or set %s.url), so apps are told where NATS is" $path $path) }}
{{- end }}
{{- $host := first $expose.names }}
{{- if contains ":" $host }}{{ $host = printf "[%s]" $host }}{{ end -}}
{{ $scheme }}://{{ $host }}:{{ int64 $port }}
{{- end }}
{{- end }}
