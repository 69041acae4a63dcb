{{/* Names and labels shared by every object of the chart. */}}
{{- define "lifecycle.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lifecycle.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "lifecycle.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "lifecycle.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The headless service that gives each worker pod a stable DNS name. */}}
{{- define "lifecycle.headless" -}}
{{- printf "%s-workers" (include "lifecycle.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lifecycle.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lifecycle.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{- define "lifecycle.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "lifecycle.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "lifecycle.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "lifecycle.checkValues" -}}
{{- if not (has .Values.mode (list "streaming" "embedded")) -}}
{{- fail (printf "mode must be streaming or embedded, not %q" .Values.mode) -}}
{{- end -}}
{{- $k := .Values.kafka -}}
{{- if not (has $k.securityProtocol (list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL")) -}}
{{- fail (printf "kafka.securityProtocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, not %q" $k.securityProtocol) -}}
{{- end -}}
{{- if and (hasPrefix "SASL" $k.securityProtocol) (or (not $k.username) (not $k.passwordSecret.name)) -}}
{{- fail "kafka.securityProtocol SASL_* needs kafka.username and kafka.passwordSecret.name" -}}
{{- end -}}
{{- end -}}

{{/* Environment of the engine container: the LIFECYCLE_* settings (DESIGN.md section 7). */}}
{{- define "lifecycle.env" -}}
- name: LIFECYCLE_HTTP_HOST
  value: "0.0.0.0"
- name: LIFECYCLE_HTTP_PORT
  value: {{ .Values.http.port | quote }}
{{- if eq .Values.mode "streaming" }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: LIFECYCLE_INSTANCE_ID
  value: "$(POD_NAME)"
- name: LIFECYCLE_CANONICAL_URL
  value: {{ printf "http://$(POD_NAME).%s.$(POD_NAMESPACE).svc.%s:%v" (include "lifecycle.headless" .) .Values.clusterDomain .Values.http.port | quote }}
- name: LIFECYCLE_DATA_DIR
  value: /data/worker
- name: LIFECYCLE_BROKER
  value: {{ printf "kafka://%s" (.Values.kafka.brokers | replace "," ";") | quote }}
- name: LIFECYCLE_PARTITIONS
  value: {{ .Values.partitions | quote }}
- name: LIFECYCLE_SESSION_TIMEOUT
  value: {{ .Values.sessionTimeout | quote }}
- name: LIFECYCLE_PROCESSING_GUARANTEE
  value: {{ .Values.processingGuarantee | quote }}
{{- with .Values.appId }}
- name: LIFECYCLE_APP_ID
  value: {{ . | quote }}
{{- end }}
- name: LIFECYCLE_EVENTS_TOPIC
  value: {{ .Values.topics.events | quote }}
- name: LIFECYCLE_TRANSITIONS_TOPIC
  value: {{ .Values.topics.transitions | quote }}
- name: LIFECYCLE_DLQ_TOPIC
  value: {{ .Values.topics.dlq | quote }}
- name: LIFECYCLE_KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL" .Values.kafka.securityProtocol }}
- name: LIFECYCLE_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.saslMechanism | quote }}
- name: LIFECYCLE_KAFKA_USERNAME
  value: {{ .Values.kafka.username | quote }}
- name: LIFECYCLE_KAFKA_PASSWORD_FILE
  value: /var/run/secrets/lifecycle/kafka-password/{{ .Values.kafka.passwordSecret.key }}
{{- end }}
{{- if .Values.kafka.caSecret.name }}
- name: LIFECYCLE_KAFKA_CA_FILE
  value: /var/run/secrets/lifecycle/kafka-ca/{{ .Values.kafka.caSecret.key }}
{{- end }}
{{- if .Values.kafka.clientCertSecret.name }}
- name: LIFECYCLE_KAFKA_CERT_FILE
  value: /var/run/secrets/lifecycle/kafka-client/{{ .Values.kafka.clientCertSecret.certKey }}
- name: LIFECYCLE_KAFKA_KEY_FILE
  value: /var/run/secrets/lifecycle/kafka-client/{{ .Values.kafka.clientCertSecret.keyKey }}
{{- end }}
{{- else }}
- name: LIFECYCLE_DB
  value: /data/lifecycle.db
{{- end }}
{{- if .Values.apiToken.secretName }}
- name: LIFECYCLE_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.apiToken.secretName }}
      key: {{ .Values.apiToken.key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Secret volumes (mounted read-only) and where they go. */}}
{{- define "lifecycle.secretVolumes" -}}
{{- $k := .Values.kafka -}}
{{- if and (eq .Values.mode "streaming") (hasPrefix "SASL" $k.securityProtocol) }}
- name: kafka-password
  secret:
    secretName: {{ $k.passwordSecret.name }}
    items:
      - key: {{ $k.passwordSecret.key }}
        path: {{ $k.passwordSecret.key }}
{{- end }}
{{- if and (eq .Values.mode "streaming") $k.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ $k.caSecret.name }}
    items:
      - key: {{ $k.caSecret.key }}
        path: {{ $k.caSecret.key }}
{{- end }}
{{- if and (eq .Values.mode "streaming") $k.clientCertSecret.name }}
- name: kafka-client
  secret:
    secretName: {{ $k.clientCertSecret.name }}
    items:
      - key: {{ $k.clientCertSecret.certKey }}
        path: {{ $k.clientCertSecret.certKey }}
      - key: {{ $k.clientCertSecret.keyKey }}
        path: {{ $k.clientCertSecret.keyKey }}
{{- end }}
{{- end -}}

{{- define "lifecycle.secretMounts" -}}
{{- $k := .Values.kafka -}}
{{- if and (eq .Values.mode "streaming") (hasPrefix "SASL" $k.securityProtocol) }}
- name: kafka-password
  mountPath: /var/run/secrets/lifecycle/kafka-password
  readOnly: true
{{- end }}
{{- if and (eq .Values.mode "streaming") $k.caSecret.name }}
- name: kafka-ca
  mountPath: /var/run/secrets/lifecycle/kafka-ca
  readOnly: true
{{- end }}
{{- if and (eq .Values.mode "streaming") $k.clientCertSecret.name }}
- name: kafka-client
  mountPath: /var/run/secrets/lifecycle/kafka-client
  readOnly: true
{{- end }}
{{- end -}}

{{/* The engine container, the same in both modes but for its command and settings. */}}
{{- define "lifecycle.container" -}}
- name: engine
  image: {{ include "lifecycle.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: [{{ ternary "worker" "serve" (eq .Values.mode "streaming") | quote }}]
  env:
    {{- include "lifecycle.env" . | trim | nindent 4 }}
  ports:
    - name: http
      containerPort: {{ .Values.http.port }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /readyz
      port: http
    periodSeconds: {{ .Values.probes.startup.periodSeconds }}
    failureThreshold: {{ .Values.probes.startup.failureThreshold }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: http
    periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
    failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: http
    periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
    failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: data
      mountPath: /data
    - name: tmp
      mountPath: /tmp
    {{- with (include "lifecycle.secretMounts" . | trim) }}
    {{- . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "lifecycle.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
