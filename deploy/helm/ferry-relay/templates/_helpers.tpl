{{/* The chart's name. */}}
{{- define "ferry-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The full name of the release's resources. */}}
{{- define "ferry-relay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ferry-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ferry-relay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "ferry-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: relay
{{- end -}}

{{/* The Secret holding the TURN REST secret. */}}
{{- define "ferry-relay.authSecret" -}}
{{- default (printf "%s-auth" (include "ferry-relay.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* Checks the values cannot express in the schema. */}}
{{- define "ferry-relay.validate" -}}
{{- if gt (int .Values.relayPorts.min) (int .Values.relayPorts.max) -}}
{{- fail "relayPorts.min must not be above relayPorts.max" -}}
{{- end -}}
{{- if and (eq (int .Values.ports.udp) 0) (eq (int .Values.ports.tcp) 0) -}}
{{- fail "ports.udp and ports.tcp are both 0: the relay would serve nothing" -}}
{{- end -}}
{{- if eq .Values.mode "loadBalancer" -}}
{{- if not .Values.externalIP.addresses -}}
{{- fail "mode loadBalancer needs externalIP.addresses: the LoadBalancer's public IP, which the relay advertises in relayed addresses" -}}
{{- end -}}
{{- if gt (sub (int .Values.relayPorts.max) (int .Values.relayPorts.min)) 99 -}}
{{- fail "mode loadBalancer lists every relay port in the Service: keep relayPorts to at most 100 ports (or use mode hostNetwork)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The limits.* values as flags: only those set, so that the relay's
own defaults (docs/FLAGS.md) hold for the others. */}}
{{- define "ferry-relay.limitArgs" -}}
{{- $l := .Values.limits | default dict -}}
{{- range $key, $flag := dict "maxAllocationsPerUser" "max-allocations-per-user" "maxAllocationsPerIP" "max-allocations-per-ip" "maxAllocations" "max-allocations" "maxConns" "max-conns" "maxConnsPerIP" "max-conns-per-ip" }}
{{- with get $l $key }}
- --{{ $flag }}={{ . | int64 }}
{{- end }}
{{- end }}
{{- range $key, $flag := dict "allocationBandwidth" "allocation-bandwidth" "serverBandwidth" "server-bandwidth" "unallocatedTimeout" "unallocated-timeout" "maxCredentialLifetime" "max-credential-lifetime" }}
{{- with get $l $key }}
- --{{ $flag }}={{ . }}
{{- end }}
{{- end }}
{{- end -}}
