{{/* The chart's name. */}}
{{- define "ferry-rendezvous.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The full name of the release's resources. */}}
{{- define "ferry-rendezvous.fullname" -}}
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

{{- define "ferry-rendezvous.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry-rendezvous.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: rendezvous
{{- end -}}

{{- define "ferry-rendezvous.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry-rendezvous.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "ferry-rendezvous.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ferry-rendezvous.labels" -}}
{{ include "ferry-rendezvous.commonLabels" . }}
{{ include "ferry-rendezvous.selectorLabels" . }}
{{- end -}}

{{- define "ferry-rendezvous.redisLabels" -}}
{{ include "ferry-rendezvous.commonLabels" . }}
{{ include "ferry-rendezvous.redisSelectorLabels" . }}
{{- end -}}

{{/* The Secret holding the TURN REST secret. */}}
{{- define "ferry-rendezvous.authSecret" -}}
{{- default (printf "%s-auth" (include "ferry-rendezvous.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* The Secret holding the Redis URL. */}}
{{- define "ferry-rendezvous.redisSecret" -}}
{{- default (printf "%s-redis" (include "ferry-rendezvous.fullname" .)) .Values.redis.existingSecret -}}
{{- end -}}

{{/* Whether the server uses Redis. */}}
{{- define "ferry-rendezvous.redis" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret .Values.redis.internal.enabled -}}true{{- end -}}
{{- end -}}

{{/* Checks the values cannot express in the schema. */}}
{{- define "ferry-rendezvous.validate" -}}
{{- $redis := include "ferry-rendezvous.redis" . -}}
{{- if and (not $redis) (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) -}}
{{- fail "more than one replica (replicaCount > 1 or autoscaling) needs Redis: set redis.url, redis.existingSecret or redis.internal.enabled" -}}
{{- end -}}
{{- if gt (len (compact (list .Values.redis.url .Values.redis.existingSecret (ternary "internal" "" .Values.redis.internal.enabled)))) 1 -}}
{{- fail "choose one Redis: redis.url, redis.existingSecret or redis.internal.enabled" -}}
{{- end -}}
{{- if and (eq .Values.tls.mode "ingress") (not .Values.ingress.trustedProxies) -}}
{{- fail "tls.mode ingress needs ingress.trustedProxies: the ingress controller pods' addresses (CIDR), or every client has the proxy's address" -}}
{{- end -}}
{{- if and (eq .Values.tls.mode "secret") (not .Values.tls.secretName) -}}
{{- fail "tls.mode secret needs tls.secretName: a kubernetes.io/tls Secret" -}}
{{- end -}}
{{- if and (eq .Values.tls.mode "acme") (ne (int .Values.service.port) 443) -}}
{{- fail "tls.mode acme needs service.port 443: the CA's TLS-ALPN-01 challenge connects there" -}}
{{- end -}}
{{- if and (eq .Values.tls.mode "acme") (ne .Values.tls.acme.accessMode "ReadWriteMany") (not .Values.tls.acme.existingClaim) (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) -}}
{{- fail "tls.mode acme with several replicas needs shared storage: tls.acme.accessMode ReadWriteMany (or an existingClaim that is)" -}}
{{- end -}}
{{- end -}}

{{/* The limits.* values as flags: only those set, so that the server's
own defaults (docs/FLAGS.md) hold for the others. Rates may be fractions;
bursts and counts are integers. */}}
{{- define "ferry-rendezvous.limitArgs" -}}
{{- $l := .Values.limits | default dict -}}
{{- range $key, $flag := dict "stunRate" "stun-rate" "ipConnectRate" "ip-connect-rate" "ipLoginRate" "ip-login-rate" "ipCredentialRate" "ip-credential-rate" }}
{{- with get $l $key }}
- --{{ $flag }}={{ . }}
{{- end }}
{{- end }}
{{- range $key, $flag := dict "stunBurst" "stun-burst" "ipConnectBurst" "ip-connect-burst" "ipLoginBurst" "ip-login-burst" "ipCredentialBurst" "ip-credential-burst" "maxConns" "max-conns" "maxConnsPerIP" "max-conns-per-ip" }}
{{- with get $l $key }}
- --{{ $flag }}={{ . | int64 }}
{{- end }}
{{- end }}
{{- end -}}
