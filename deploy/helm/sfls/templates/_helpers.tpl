{{/*
sfls.name is the chart name (or nameOverride), cut to 63 characters for DNS labels.
*/}}
{{- define "sfls.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
sfls.fullname is `<release>-<chart>`, or the release name alone when it already holds the chart name.
*/}}
{{- define "sfls.fullname" -}}
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
sfls.componentName is `<fullname>-<component>`; call with (dict "root" $ "component" "syncer").
*/}}
{{- define "sfls.componentName" -}}
{{- printf "%s-%s" (include "sfls.fullname" .root | trunc 52 | trimSuffix "-") .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
sfls.chart is `<chart>-<version>` for the helm.sh/chart label.
*/}}
{{- define "sfls.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
sfls.selectorLabels: name and instance; components add app.kubernetes.io/component.
*/}}
{{- define "sfls.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sfls.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
sfls.labels are the recommended labels plus commonLabels, for every object.
*/}}
{{- define "sfls.labels" -}}
helm.sh/chart: {{ include "sfls.chart" . }}
{{ include "sfls.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sfls
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
sfls.componentSelectorLabels: name, instance and component, so no workload selects another's pods.
Call with (dict "root" $ "component" "listener").
*/}}
{{- define "sfls.componentSelectorLabels" -}}
{{ include "sfls.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
sfls.componentLabels: the full label set of one component's objects.
*/}}
{{- define "sfls.componentLabels" -}}
{{ include "sfls.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
sfls.serviceAccountName is the ServiceAccount the pods run as.
*/}}
{{- define "sfls.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sfls.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
sfls.image is repository:tag, or repository@digest when a digest is given.
*/}}
{{- define "sfls.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
sfls.secretName is the Secret the credentials come from.
*/}}
{{- define "sfls.secretName" -}}
{{- if .Values.credentials.create }}
{{- printf "%s-credentials" (include "sfls.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- required "credentials.existingSecret: name the Secret holding the sfls credentials, or set credentials.create=true for a development install" .Values.credentials.existingSecret }}
{{- end }}
{{- end }}

{{/*
sfls.configMapName holds the sfls YAML configuration.
*/}}
{{- define "sfls.configMapName" -}}
{{- printf "%s-config" (include "sfls.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
sfls.configFile is the YAML file sfls reads through SFLS_CONFIG: the config values plus the kafka
and observability sections built from their own values.
*/}}
{{- define "sfls.configFile" -}}
{{- $kafka := dict "bootstrap_servers" .Values.kafka.bootstrapServers "topic_prefix" .Values.kafka.topicPrefix "partitions" .Values.kafka.partitions "replication_factor" .Values.kafka.replicationFactor "create_topics" (eq (include "sfls.createTopics" .) "true") }}
{{- $kafka = merge $kafka (deepCopy .Values.kafka.config) }}
{{- $observability := dict "log_level" .Values.observability.logLevel "log_format" "json" "metrics_host" "0.0.0.0" "metrics_port" .Values.observability.port "liveness_seconds" .Values.observability.livenessSeconds }}
{{- $config := merge (dict "kafka" $kafka "observability" $observability) (deepCopy .Values.config) }}
{{- toYaml $config }}
{{- end }}

{{/*
sfls.podAnnotations: the config checksum (so a config change rolls the pods) plus pod annotations.
Call with (dict "root" $ "extra" .Values.<component>.podAnnotations).
*/}}
{{- define "sfls.podAnnotations" -}}
checksum/config: {{ include "sfls.configFile" .root | sha256sum }}
{{- if .root.Values.credentials.create }}
checksum/credentials: {{ toJson .root.Values.credentials.values | sha256sum }}
{{- end }}
{{- with .root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
sfls.env: the config file location and the credentials as secretKeyRef, plus extra variables.
Call with (dict "root" $ "extra" .Values.<component>.extraEnv).
*/}}
{{- define "sfls.env" -}}
- name: SFLS_CONFIG
  value: /etc/sfls/config.yaml
{{- $secret := include "sfls.secretName" .root }}
{{- $kafkaUserEnv := list }}
{{- if and .root.Values.strimzi.users.enabled .component }}
{{- $kafkaUserEnv = include "sfls.kafkaUserEnv" (dict "root" .root "principal" .component) | fromYamlArray }}
{{- end }}
{{- /* With strimzi.users the KafkaUser's Secret replaces any Kafka credentials from credentials.env. */}}
{{- $owned := ternary (list "SFLS_KAFKA__SASL_USERNAME" "SFLS_KAFKA__SASL_PASSWORD") list (and .root.Values.strimzi.users.enabled (not (empty .component))) }}
{{- range $kafkaUserEnv }}
{{- $owned = append $owned .name }}
{{- end }}
{{- range $name, $ref := .root.Values.credentials.env }}
{{- if not (has $name $owned) }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $ref.key }}
      optional: {{ $ref.optional }}
{{- end }}
{{- end }}
{{- with $kafkaUserEnv }}
{{ toYaml . }}
{{- end }}
{{- with .root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
sfls.probe renders one HTTP probe on the metrics port; call with (dict "probe" .Values.x.livenessProbe "path" "/healthz").
*/}}
{{- define "sfls.probe" -}}
httpGet:
  path: {{ .path }}
  port: http-metrics
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
successThreshold: {{ .probe.successThreshold }}
{{- end }}

{{/*
sfls.container renders the sfls container of any component.
Call with (dict "root" $ "name" "syncer" "values" .Values.syncer "probes" true).
*/}}
{{- define "sfls.container" -}}
- name: {{ .name }}
  image: {{ include "sfls.image" .root | quote }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args:
    {{- toYaml .values.args | nindent 4 }}
  env:
    {{- include "sfls.env" (dict "root" .root "extra" .values.extraEnv "component" (.principal | default .name)) | nindent 4 }}
  {{- with .root.Values.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: http-metrics
      containerPort: {{ .root.Values.observability.port }}
      protocol: TCP
  {{- if .probes }}
  {{- if .values.startupProbe.enabled }}
  startupProbe:
    {{- include "sfls.probe" (dict "probe" .values.startupProbe "path" "/healthz") | nindent 4 }}
  {{- end }}
  {{- if .values.livenessProbe.enabled }}
  livenessProbe:
    {{- include "sfls.probe" (dict "probe" .values.livenessProbe "path" "/healthz") | nindent 4 }}
  {{- end }}
  {{- if .values.readinessProbe.enabled }}
  readinessProbe:
    {{- include "sfls.probe" (dict "probe" .values.readinessProbe "path" "/readyz") | nindent 4 }}
  {{- end }}
  {{- end }}
  {{- with .values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .root.Values.containerSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: config
      mountPath: /etc/sfls
      readOnly: true
    - name: tmp
      mountPath: /tmp
    {{- with include "sfls.kafkaVolumeMounts" .root }}
    {{- . | trim | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
sfls.podSpec renders the pod spec shared by every component (without restartPolicy).
Call with (dict "root" $ "name" "syncer" "values" .Values.syncer "probes" true); "principal" names another
component's Kafka principal (the reconcile CronJob runs as ops).
*/}}
{{- define "sfls.podSpec" -}}
serviceAccountName: {{ include "sfls.serviceAccountName" .root }}
automountServiceAccountToken: {{ .root.Values.serviceAccount.automountServiceAccountToken }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .root.Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.terminationGracePeriodSeconds }}
terminationGracePeriodSeconds: {{ . }}
{{- end }}
containers:
  {{- include "sfls.container" . | nindent 2 }}
volumes:
  - name: config
    configMap:
      name: {{ include "sfls.configMapName" .root }}
  - name: tmp
    emptyDir:
      sizeLimit: {{ .values.tmpSizeLimit | default "64Mi" }}
  {{- with include "sfls.kafkaVolumes" (dict "root" .root "principal" (.principal | default .name)) }}
  {{- . | trim | nindent 2 }}
  {{- end }}
{{- with (.values.nodeSelector | default .root.Values.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.values.tolerations | default .root.Values.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.values.affinity | default .root.Values.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
sfls.importerJobSpec is the Job spec of the one-off import Job and of the CronJob's jobTemplate.
*/}}
{{- define "sfls.importerJobSpec" -}}
backoffLimit: {{ .Values.importer.backoffLimit }}
activeDeadlineSeconds: {{ .Values.importer.activeDeadlineSeconds }}
ttlSecondsAfterFinished: {{ .Values.importer.ttlSecondsAfterFinished }}
template:
  metadata:
    labels:
      {{- include "sfls.componentLabels" (dict "root" . "component" "importer") | nindent 6 }}
      {{- with .Values.podLabels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      {{- include "sfls.podAnnotations" (dict "root" . "extra" .Values.importer.podAnnotations) | nindent 6 }}
  spec:
    restartPolicy: Never
    {{- include "sfls.podSpec" (dict "root" . "name" "importer" "values" .Values.importer "probes" false) | nindent 4 }}
{{- end }}

{{/*
sfls.requestsTabMode fails the render when requestsTab.enabled deploys a writer that config.requests_tab.mode
tells to land nothing ("off", or false: YAML's reading of an unquoted off); requestsTab.enabled is the switch.
*/}}
{{- define "sfls.requestsTabMode" -}}
{{- $mode := dig "requests_tab" "mode" "failures" .Values.config | toString }}
{{- if has $mode (list "off" "false") }}
{{- fail "config.requests_tab.mode is off but requestsTab.enabled deploys the Requests tab writer, which would land nothing: set requestsTab.enabled=false to switch the Requests tab off" }}
{{- end }}
{{- end }}
