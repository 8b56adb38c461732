{{/*
sfls.createTopics is "true" when the services create missing topics themselves: kafka.createTopics, unless
Strimzi's Topic Operator manages them (strimzi.topics.enabled).
*/}}
{{- define "sfls.createTopics" -}}
{{- and .Values.kafka.createTopics (not .Values.strimzi.topics.enabled) }}
{{- end }}

{{/*
sfls.strimziCluster is the Strimzi Kafka cluster name, required once topics or users are enabled.
*/}}
{{- define "sfls.strimziCluster" -}}
{{- required "strimzi.cluster: name the Strimzi Kafka cluster (the Kafka resource) the KafkaTopics and KafkaUsers belong to" .Values.strimzi.cluster }}
{{- end }}

{{/*
sfls.strimziMetadata: name, namespace (strimzi.namespace when set) and labels of a KafkaTopic or KafkaUser.
Call with (dict "root" $ "name" "..." "component" "...").
*/}}
{{- define "sfls.strimziMetadata" -}}
name: {{ .name }}
{{- with .root.Values.strimzi.namespace }}
namespace: {{ . }}
{{- end }}
labels:
  {{- include "sfls.componentLabels" (dict "root" .root "component" .component) | nindent 2 }}
  strimzi.io/cluster: {{ include "sfls.strimziCluster" .root }}
{{- end }}

{{/*
sfls.kafkaTopics lists every sfls topic as shared/kafka.py's Topics.specs does (tests/deploy compare the two):
name, partitions, compacted, and retention "data" (changes, requests) or "deadLetter" (the .dlt topics).
*/}}
{{- define "sfls.kafkaTopics" -}}
{{- $p := .Values.kafka.topicPrefix }}
{{- $n := int64 .Values.kafka.partitions }}
{{- $topics := list
  (dict "name" (printf "%s.changes" $p) "partitions" $n "compacted" false "retention" "data")
  (dict "name" (printf "%s.changes.dlt" $p) "partitions" $n "compacted" false "retention" "deadLetter")
  (dict "name" (printf "%s.requests" $p) "partitions" $n "compacted" false "retention" "data")
  (dict "name" (printf "%s.listener.checkpoints" $p) "partitions" 1 "compacted" true)
  (dict "name" (printf "%s.listener.dlt" $p) "partitions" 1 "compacted" false "retention" "deadLetter")
  (dict "name" (printf "%s.importer.dlt" $p) "partitions" 1 "compacted" false "retention" "deadLetter") }}
{{- /* shared/kafka.py CATALOGUE_ENTITIES */}}
{{- range (list "package" "package_frequency" "package_currency" "package_service" "pricing_rule" "service" "usage_bucket" "rate_plan" "rate_group" "rate" "share_plan" "share_level") }}
{{- $topics = append $topics (dict "name" (printf "%s.catalogue.%s" $p .) "partitions" 1 "compacted" true) }}
{{- end }}
{{- /* shared/kafka.py REFERENCE_ENTITIES */}}
{{- range (list "account_status_type" "account_type" "contact_type" "contact_point_type" "country" "state" "owner" "currency" "owner_currency" "bill_group" "ar_term" "invoice") }}
{{- $topics = append $topics (dict "name" (printf "%s.reference.%s" $p .) "partitions" 1 "compacted" true) }}
{{- end }}
{{- toYaml $topics }}
{{- end }}

{{/*
sfls.kafkaTopicResourceName turns a topic name into a KafkaTopic metadata.name (a DNS-1123 subdomain:
lower case, `_` -> `-`); the real name goes in spec.topicName.
*/}}
{{- define "sfls.kafkaTopicResourceName" -}}
{{- $name := . | lower | replace "_" "-" }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" $name) }}
{{- fail (printf "kafka.topicPrefix: topic %q gives the KafkaTopic name %q, not a DNS-1123 subdomain; start and end the prefix with a letter or digit" . $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{/*
sfls.kafkaUserName is the KafkaUser (and so the SCRAM user name, or CN=<name> with tls) of a principal:
listener, syncer, importer or ops. Call with (dict "root" $ "principal" "syncer").
*/}}
{{- define "sfls.kafkaUserName" -}}
{{- include "sfls.componentName" (dict "root" .root "component" .principal) }}
{{- end }}

{{/*
sfls.kafkaUserSecret is the Secret Strimzi's User Operator writes for a KafkaUser (secretPrefix + user name).
*/}}
{{- define "sfls.kafkaUserSecret" -}}
{{- printf "%s%s" .root.Values.strimzi.users.secretPrefix (include "sfls.kafkaUserName" .) }}
{{- end }}

{{/*
sfls.kafkaSecurityProtocol is the librdkafka security.protocol the pods use with their KafkaUser.
*/}}
{{- define "sfls.kafkaSecurityProtocol" -}}
{{- if eq .Values.strimzi.users.authentication "tls" }}SSL{{ else }}{{ .Values.strimzi.users.securityProtocol }}{{ end }}
{{- end }}

{{/*
sfls.kafkaClusterCaSecret is the Secret holding the Strimzi cluster CA certificate (key ca.crt).
*/}}
{{- define "sfls.kafkaClusterCaSecret" -}}
{{- .Values.strimzi.users.clusterCaSecret | default (printf "%s-cluster-ca-cert" (include "sfls.strimziCluster" .)) }}
{{- end }}

{{/*
sfls.kafkaUserEnv: the SFLS_KAFKA__* variables that give a pod its own Kafka principal (strimzi.users).
Call with (dict "root" $ "principal" "syncer"). Renders a YAML list of EnvVar objects.
*/}}
{{- define "sfls.kafkaUserEnv" -}}
{{- $protocol := include "sfls.kafkaSecurityProtocol" .root }}
{{- $env := list (dict "name" "SFLS_KAFKA__SECURITY_PROTOCOL" "value" $protocol) }}
{{- if eq .root.Values.strimzi.users.authentication "tls" }}
{{- $env = append $env (dict "name" "SFLS_KAFKA__SSL_CERTIFICATE_LOCATION" "value" "/etc/sfls-kafka/user/user.crt") }}
{{- $env = append $env (dict "name" "SFLS_KAFKA__SSL_KEY_LOCATION" "value" "/etc/sfls-kafka/user/user.key") }}
{{- else }}
{{- $env = append $env (dict "name" "SFLS_KAFKA__SASL_MECHANISM" "value" "SCRAM-SHA-512") }}
{{- $env = append $env (dict "name" "SFLS_KAFKA__SASL_USERNAME" "value" (include "sfls.kafkaUserName" .)) }}
{{- $ref := dict "name" (include "sfls.kafkaUserSecret" .) "key" "password" }}
{{- $env = append $env (dict "name" "SFLS_KAFKA__SASL_PASSWORD" "valueFrom" (dict "secretKeyRef" $ref)) }}
{{- end }}
{{- if hasSuffix "SSL" $protocol }}
{{- $env = append $env (dict "name" "SFLS_KAFKA__SSL_CA_LOCATION" "value" "/etc/sfls-kafka/ca/ca.crt") }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
sfls.kafkaVolumes: the cluster CA and (tls) the user certificate Secrets, when strimzi.users is enabled.
Call with (dict "root" $ "principal" "syncer").
*/}}
{{- define "sfls.kafkaVolumes" -}}
{{- if .root.Values.strimzi.users.enabled }}
{{- if hasSuffix "SSL" (include "sfls.kafkaSecurityProtocol" .root) }}
- name: kafka-ca
  secret:
    secretName: {{ include "sfls.kafkaClusterCaSecret" .root }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- if eq .root.Values.strimzi.users.authentication "tls" }}
- name: kafka-user
  secret:
    secretName: {{ include "sfls.kafkaUserSecret" . }}
    items:
      - key: user.crt
        path: user.crt
      - key: user.key
        path: user.key
{{- end }}
{{- end }}
{{- end }}

{{/*
sfls.kafkaVolumeMounts mounts sfls.kafkaVolumes read-only under /etc/sfls-kafka.
*/}}
{{- define "sfls.kafkaVolumeMounts" -}}
{{- if .Values.strimzi.users.enabled }}
{{- if hasSuffix "SSL" (include "sfls.kafkaSecurityProtocol" .) }}
- name: kafka-ca
  mountPath: /etc/sfls-kafka/ca
  readOnly: true
{{- end }}
{{- if eq .Values.strimzi.users.authentication "tls" }}
- name: kafka-user
  mountPath: /etc/sfls-kafka/user
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/*
sfls.kafkaAcls: the Strimzi ACL rules of a KafkaUser, from files/kafka-acls.yaml (generated from
shared/acls.py). Each principal contributes its `always` rules, plus `createTopics` when the services create
their topics (sfls.createTopics). Placeholders {prefix} and {transactional_id} are filled in; Kafka's
pattern type `prefixed` becomes Strimzi's `prefix`. Call with (dict "root" $ "principals" (list "dlq" ...)).
*/}}
{{- define "sfls.kafkaAcls" -}}
{{- $raw := .root.Files.Get "files/kafka-acls.yaml" }}
{{- if not $raw }}
{{- fail "files/kafka-acls.yaml is missing from the chart: generate it with `python scripts/build_acls.py`" }}
{{- end }}
{{- $file := fromYaml $raw }}
{{- if hasKey $file "Error" }}
{{- fail (printf "files/kafka-acls.yaml is not valid YAML: %s" $file.Error) }}
{{- end }}
{{- $create := eq (include "sfls.createTopics" .root) "true" }}
{{- $prefix := .root.Values.kafka.topicPrefix }}
{{- $transactionalId := dig "listener" "transactional_id" "sfls-listener" .root.Values.config }}
{{- $rules := list }}
{{- range $principal := .principals }}
{{- if not (hasKey $file $principal) }}
{{- fail (printf "files/kafka-acls.yaml has no entry for %s: regenerate it with `python scripts/build_acls.py`" $principal) }}
{{- end }}
{{- $entry := get $file $principal }}
{{- $source := $entry.always | default list }}
{{- if $create }}
{{- $source = concat $source ($entry.createTopics | default list) }}
{{- end }}
{{- range $source }}
{{- $name := .resource.name | default "" | toString | replace "{prefix}" $prefix | replace "{transactional_id}" $transactionalId }}
{{- if regexMatch "\\{[A-Za-z_]+\\}" $name }}
{{- fail (printf "files/kafka-acls.yaml (%s): the chart does not know the placeholder in %q" $principal $name) }}
{{- end }}
{{- $pattern := .resource.patternType | default "literal" }}
{{- $pattern = ternary "prefix" $pattern (eq $pattern "prefixed") }}
{{- $resource := dict "type" .resource.type }}
{{- if ne .resource.type "cluster" }}
{{- $resource = merge $resource (dict "name" $name "patternType" $pattern) }}
{{- end }}
{{- $rule := dict "resource" $resource "operations" .operations }}
{{- with .host }}
{{- $_ := set $rule "host" . }}
{{- end }}
{{- $rules = append $rules $rule }}
{{- end }}
{{- end }}
{{- toYaml (uniq $rules) }}
{{- end }}

{{/*
sfls.validateKafkaConfig: with strimzi.users the chart sets the pods' security settings itself, so
kafka.config must not set them too (two values for one librdkafka key).
*/}}
{{- define "sfls.validateKafkaConfig" -}}
{{- if .Values.strimzi.users.enabled }}
{{- $owned := list "security.protocol" "sasl.mechanism" "sasl.mechanisms" "sasl.username" "ssl.ca.location" "ssl.certificate.location" "ssl.key.location" }}
{{- range $key, $_ := .Values.kafka.config }}
{{- if has ($key | lower | replace "_" ".") $owned }}
{{- fail (printf "kafka.config.%s: strimzi.users.enabled sets it for each workload's KafkaUser; remove it from kafka.config" $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
