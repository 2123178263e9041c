{{/*
Names: every object is named after its component (tether-node, tether-webhook, tether-descheduler,
tether-scheduler) in the release namespace; the binaries' defaults (the webhook's Service and Secret, the leader
Leases) use the same names.
*/}}

{{/* tether.labels: the labels of a component's objects. Call with (dict "root" $ "component" "node"). */}}
{{- define "tether.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: tether
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: tether
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* tether.selectorLabels: what a component's Deployment, Services and PodDisruptionBudget select on. */}}
{{- define "tether.selectorLabels" -}}
app.kubernetes.io/name: tether
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* tether.name: the name of a component's objects, tether-<component>. */}}
{{- define "tether.name" -}}
tether-{{ .component }}
{{- end }}

{{/* tether.image: <registry>/<binary>:<tag or appVersion>. Call with (dict "root" $ "binary" "tether-node"). */}}
{{- define "tether.image" -}}
{{ .root.Values.image.registry | trimSuffix "/" }}/{{ .binary }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end }}

{{/*
tether.podSpecCommon: what every component's pod spec shares (service account, pull secrets, security context,
placement). Call with (dict "root" $ "component" "node" "values" .Values.node).
*/}}
{{- define "tether.podSpecCommon" -}}
serviceAccountName: {{ include "tether.name" . }}
automountServiceAccountToken: true
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
tether.containerCommon: image, pull policy, security context, probes and resources of a component's container.
Call with (dict "root" $ "binary" "tether-node" "values" .Values.node).
*/}}
{{- define "tether.containerCommon" -}}
image: {{ include "tether.image" . }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml .root.Values.securityContext | nindent 2 }}
{{- with .values.livenessProbe }}
livenessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.readinessProbe }}
readinessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
resources:
  {{- toYaml .values.resources | nindent 2 }}
{{- end }}

{{/* tether.serviceAccount: a component's ServiceAccount. Call with (dict "root" $ "component" "node"). */}}
{{- define "tether.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "tether.name" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "tether.labels" . | nindent 4 }}
{{- end }}

{{/*
tether.pdb: a component's PodDisruptionBudget, when values.podDisruptionBudget.enabled.
Call with (dict "root" $ "component" "node" "values" .Values.node).
*/}}
{{- define "tether.pdb" -}}
{{- if .values.podDisruptionBudget.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "tether.name" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "tether.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "tether.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/*
tether.metrics: a component's metrics Service tether-<component>-metrics (port "metrics") and, with
serviceMonitor.enabled, its ServiceMonitor. Call with (dict "root" $ "component" "node" "port" 10256 "scheme" "http"),
and "targetPort" when the container's port is not named "metrics".
*/}}
{{- define "tether.metrics" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "tether.name" . }}-metrics
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "tether.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "tether.selectorLabels" . | nindent 4 }}
  ports:
    - name: metrics
      port: {{ .port }}
      targetPort: {{ .targetPort | default "metrics" }}
      protocol: TCP
{{- if .root.Values.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "tether.name" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "tether.labels" . | nindent 4 }}
    {{- with .root.Values.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "tether.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .root.Release.Namespace }}
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ .root.Values.serviceMonitor.interval }}
      scheme: {{ .scheme }}
      {{- if eq .scheme "https" }}
      # The component serves a self-signed certificate.
      tlsConfig:
        insecureSkipVerify: true
      {{- end }}
{{- end }}
{{- end }}

{{/* tether.subjects: the subjects of a binding to a component's ServiceAccount. Call with (dict "root" $ "component" "node"). */}}
{{- define "tether.subjects" -}}
subjects:
  - kind: ServiceAccount
    name: {{ include "tether.name" . }}
    namespace: {{ .root.Release.Namespace }}
{{- end }}
