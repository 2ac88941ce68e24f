#!/usr/bin/env bash
# Builds Terraform and the azapi provider from the Go module proxy (the IaC tests drive them;
# Debian packages no Terraform), once per pinned pair of versions: the outputs live under a cache
# directory keyed by this script, so a warm machine pays nothing. Prints the directory on its last
# line: `terraform` itself, and `mirror/`, a filesystem mirror holding the provider, so
# `terraform init -plugin-dir` works offline.
#
# Terraform's module zip on the proxy leaves out its nested modules (the remote-state backends:
# s3, gcs, azurerm, …, which its go.mod replaces with local directories), so it is built without
# them: state stays local, which is all the tests use.
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
terraform_version=v1.13.3
azapi_version=v1.15.0

key=$(sha256sum "$script" | cut -c1-16)
cache="${KUBEINVOKE_TERRAFORM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubeinvoke/terraform}/$key"
provider_dir="$cache/out/mirror/registry.terraform.io/azure/azapi/${azapi_version#v}/linux_amd64"

if [ ! -x "$cache/out/terraform" ] || [ ! -x "$provider_dir/terraform-provider-azapi_$azapi_version" ]; then
  echo "building Terraform $terraform_version and azapi $azapi_version into $cache/out (first time on this machine: a few minutes)" >&2
  start=$(date +%s)
  rm -rf "$cache/tmp" && mkdir -p "$cache/tmp"
  export GOCACHE="$cache/go-build" GOMODCACHE="$cache/go-mod" GOFLAGS="${GOFLAGS:-} -modcacherw"
  export CGO_ENABLED=0
  source_dir=$(go mod download -json "github.com/hashicorp/terraform@$terraform_version" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  cp -r "$source_dir" "$cache/tmp/terraform-src"
  chmod -R u+w "$cache/tmp/terraform-src"
  (
    cd "$cache/tmp/terraform-src"
    missing='internal/backend/remote-state/(azure|consul|cos|gcs|kubernetes|oci|oss|pg|s3)|internal/legacy'
    grep -Ev "$missing" go.mod > go.mod.new && mv go.mod.new go.mod
    python3 - "$missing" <<'PY'
import re, sys
path = "internal/backend/init/init.go"
text = open(path).read()
gone = re.compile(sys.argv[1])
names = [m.group(1) for m in re.finditer(r'^\s*(\w+) "github.com/hashicorp/terraform/([^"]+)"', text, re.M) if gone.search(m.group(2))]
text = "\n".join(l for l in text.split("\n") if not (gone.search(l) and '"github.com' in l))
for name in names:
    text = re.sub(r'^\s*"[\w-]+":\s*func\(\) backend\.Backend \{ return ' + name + r'\.New\(\) \},\n', "", text, flags=re.M)
open(path, "w").write(text)
PY
    go build -mod=mod -trimpath -ldflags="-s -w" -o "$cache/tmp/out/terraform" .
  )
  # Built in its own module directory: `go install …@version` would ask the proxy for the list of
  # versions, which it does not serve for this module.
  azapi_dir=$(go mod download -json "github.com/Azure/terraform-provider-azapi@$azapi_version" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  cp -r "$azapi_dir" "$cache/tmp/azapi-src"
  chmod -R u+w "$cache/tmp/azapi-src"
  mirrored="$cache/tmp/out/${provider_dir#"$cache/out/"}"
  mkdir -p "$mirrored"
  (cd "$cache/tmp/azapi-src" && go build -mod=mod -trimpath -ldflags="-s -w" -o "$mirrored/terraform-provider-azapi_$azapi_version" .)
  rm -rf "$cache/out" && mv "$cache/tmp/out" "$cache/out"
  rm -rf "$cache/tmp" "$GOCACHE" "$GOMODCACHE"
  echo "built in $(( $(date +%s) - start )) s" >&2
fi
echo "$cache/out"
