{{/*
sfls.networkPolicyPeers: the `to` peers of one egress target of networkPolicy.egress (dns, kafka, salesforce,
pubsub, logisense, pushgateway): its peers plus an ipBlock per CIDR. Kafka defaults to the Strimzi cluster's pods
(label strimzi.io/cluster, in strimzi.namespace when set) when strimzi.cluster is set and nothing else is.
An empty list would let the pod reach every address, so a target with no peers fails the render instead.
Call with (dict "root" $ "target" "kafka").
*/}}
{{- define "sfls.networkPolicyPeers" -}}
{{- $values := .root.Values }}
{{- $target := get $values.networkPolicy.egress .target }}
{{- $to := concat ($target.peers | default list) }}
{{- range ($target.cidrs | default list) }}
{{- $to = append $to (dict "ipBlock" (dict "cidr" .)) }}
{{- end }}
{{- if and (not $to) (eq .target "kafka") $values.strimzi.cluster }}
{{- $peer := dict "podSelector" (dict "matchLabels" (dict "strimzi.io/cluster" $values.strimzi.cluster)) }}
{{- with $values.strimzi.namespace }}
{{- $_ := set $peer "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" .)) }}
{{- end }}
{{- $to = list $peer }}
{{- end }}
{{- if not $to }}
{{- $hints := dict
  "dns" "name the cluster DNS pods in peers (kube-system/kube-dns by default) or its address in cidrs"
  "kafka" "name the brokers' pods in peers, their addresses in cidrs, or set strimzi.cluster for the Strimzi cluster's pods"
  "salesforce" "NetworkPolicy cannot match host names: list Salesforce's published IP ranges in cidrs (or 0.0.0.0/0 for any address on these ports)"
  "pubsub" "config.salesforce.transport is pubsub and NetworkPolicy cannot match host names: list Salesforce's published IP ranges in cidrs (or 0.0.0.0/0 for any address on these ports)"
  "logisense" "NetworkPolicy cannot match host names: list your LogiSense tenant's IP ranges in cidrs (or 0.0.0.0/0 for any address on these ports)"
  "pushgateway" "config.importer.pushgateway_url or config.reconcile.pushgateway_url is set: name the Pushgateway's pods in peers or its address in cidrs" }}
{{- fail (printf "networkPolicy.egress.%s: no peers and no cidrs; %s" .target (get $hints .target)) }}
{{- end }}
{{- toYaml $to }}
{{- end }}

{{/*
sfls.networkPolicy renders the NetworkPolicy of one workload: its pods (selected by the component's selector
labels) accept traffic only on the metrics port and only from networkPolicy.ingress.from (when `metrics`),
and reach only the listed egress targets plus networkPolicy.egress.extra.
Call with (dict "root" $ "component" "syncer" "metrics" true "targets" (list "dns" "kafka" ...)).
*/}}
{{- define "sfls.networkPolicy" -}}
{{- $ctx := dict "root" .root "component" .component }}
{{- $np := .root.Values.networkPolicy }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "sfls.componentName" $ctx }}
  labels:
    {{- include "sfls.componentLabels" $ctx | nindent 4 }}
  {{- with .root.Values.commonAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  podSelector:
    matchLabels:
      {{- include "sfls.componentSelectorLabels" $ctx | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  {{- if and .metrics $np.ingress.from }}
  ingress:
    - from:
        {{- toYaml $np.ingress.from | nindent 8 }}
      ports:
        - port: {{ .root.Values.observability.port }}
          protocol: TCP
  {{- else }}
  {{- /* No rule: nothing may connect (the importer serves no scrape; an empty `from` would admit everyone). */}}
  ingress: []
  {{- end }}
  egress:
    {{- range $target := .targets }}
    - to:
        {{- include "sfls.networkPolicyPeers" (dict "root" $.root "target" $target) | nindent 8 }}
      ports:
        {{- toYaml (get $np.egress $target).ports | nindent 8 }}
    {{- end }}
    {{- with $np.egress.extra }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
