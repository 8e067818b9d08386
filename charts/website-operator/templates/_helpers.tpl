{{/* Name of the chart, or nameOverride. */}}
{{- define "website-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: fullnameOverride, the release name when it contains the chart name, else both. */}}
{{- define "website-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "website-operator.webhookName" -}}{{ include "website-operator.fullname" . }}-webhook{{- end -}}
{{- define "website-operator.controllerName" -}}{{ include "website-operator.fullname" . }}-controller{{- end -}}
{{/* Both webhook configurations (cluster-scoped) carry this name. */}}
{{- define "website-operator.webhookConfigurationName" -}}{{ include "website-operator.fullname" . }}{{- end -}}

{{/* The Secret holding the webhook's serving certificate (tls.crt, tls.key) in every mode. */}}
{{- define "website-operator.certSecretName" -}}
{{- if eq .Values.certificates.mode "provided" -}}
{{- .Values.certificates.provided.secretName -}}
{{- else -}}
{{- include "website-operator.webhookName" . }}-tls
{{- end -}}
{{- end -}}

{{/* The cert-manager Certificate for the serving certificate. */}}
{{- define "website-operator.certificateName" -}}{{ include "website-operator.webhookName" . }}{{- end -}}

{{- define "website-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "website-operator.labels" -}}
helm.sh/chart: {{ include "website-operator.chart" . }}
app.kubernetes.io/name: {{ include "website-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: website-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "website-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "website-operator.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's objects. */}}
{{- define "website-operator.componentLabels" -}}
{{ include "website-operator.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* repository:tag of an operator image; the tag defaults to appVersion. Call with (dict "ctx" $ "image" .Values.x.image). */}}
{{- define "website-operator.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The in-cluster DNS name the API server calls. */}}
{{- define "website-operator.webhookServiceHost" -}}
{{ include "website-operator.webhookName" . }}.{{ .Release.Namespace }}.svc
{{- end -}}

{{/* Container security context shared by both components: non-root, read-only, no capabilities. */}}
{{- define "website-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Pod security context shared by both components (65532: the distroless "nonroot" user). */}}
{{- define "website-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* caBundle of the webhook configurations in "provided" mode: PEM is base64-encoded, base64 is kept. */}}
{{- define "website-operator.providedCaBundle" -}}
{{- $ca := trim .Values.certificates.provided.caBundle -}}
{{- if hasPrefix "-----BEGIN" $ca -}}{{ b64enc $ca }}{{- else -}}{{ $ca | nospace }}{{- end -}}
{{- end -}}

{{- define "website-operator.apiName" -}}{{ include "website-operator.fullname" . }}-api{{- end -}}
{{/* The Secret holding website-api's serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "website-operator.apiCertSecretName" -}}
{{- if .Values.api.certificate.secretName -}}
{{- .Values.api.certificate.secretName -}}
{{- else -}}
{{- include "website-operator.apiName" . }}-tls
{{- end -}}
{{- end -}}
