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
