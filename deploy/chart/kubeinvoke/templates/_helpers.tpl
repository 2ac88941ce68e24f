{{- define "kubeinvoke.labels" -}}
app.kubernetes.io/name: kubeinvoke
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "kubeinvoke.selector" -}}
app.kubernetes.io/name: kubeinvoke
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "kubeinvoke.storeSecret" -}}
{{- .Values.store.existingSecret | default (printf "%s-store" .Release.Name) -}}
{{- end }}
{{- define "kubeinvoke.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" .Release.Name) -}}
{{- end }}
{{- define "kubeinvoke.hostname" -}}
{{- .Values.hostname | default (printf "%s.%s.svc" .Release.Name .Release.Namespace) -}}
{{- end }}
