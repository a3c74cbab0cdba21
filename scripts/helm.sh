#!/usr/bin/env bash
# The Helm chart's checks (make test-helm):
#
#   scripts/helm.sh install   helm and kubeconform into .tools through the Go module proxy, and
#                             kubeconform's schemas, written from the swagger.json of the
#                             k8s.io/kubernetes module (no schema repository is reached online)
#   scripts/helm.sh check     helm lint and kubeconform -strict on the chart rendered with the
#                             defaults and with every option on; and the renderings that must
#                             fail (no secrets, more deliver replicas than partitions) do
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
tools="$root/.tools"
helm_version=v4.3.2
kubeconform_version=v0.8.0
k8s_version=v1.37.2
schemas="$tools/k8s-schemas/$k8s_version"
chart="$root/deploy/helm/relay"

install() {
	mkdir -p "$tools"
	if [ ! -f "$tools/.helm-$helm_version" ]; then
		echo "helm.sh: building helm $helm_version (once, a few minutes)" >&2
		GOBIN="$tools" GOWORK=off go install "helm.sh/helm/v4/cmd/helm@$helm_version"
		touch "$tools/.helm-$helm_version"
	fi
	if [ ! -f "$tools/.kubeconform-$kubeconform_version" ]; then
		GOBIN="$tools" GOWORK=off go install "github.com/yannh/kubeconform/cmd/kubeconform@$kubeconform_version"
		touch "$tools/.kubeconform-$kubeconform_version"
	fi
	if [ ! -f "$schemas/.complete" ]; then
		local dir
		dir=$(cd "${TMPDIR:-/tmp}" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$k8s_version" |
			sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[ -f "$dir/api/openapi-spec/swagger.json" ] || { echo "helm.sh: no swagger.json in k8s.io/kubernetes@$k8s_version" >&2; exit 1; }
		rm -rf "$schemas"
		(cd "$root" && go run ./services/relay k8s-schemas --swagger "$dir/api/openapi-spec/swagger.json" --out "$schemas")
		touch "$schemas/.complete"
	fi
}

# render NAME ARGS...: helm template the chart with ARGS into a file, and validate it.
render() {
	local name=$1
	shift
	local out="$work/$name.yaml"
	"$tools/helm" template relay "$chart" "$@" >"$out"
	"$tools/kubeconform" -strict -summary -kubernetes-version "${k8s_version#v}" \
		-schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$out"
}

# refuse NAME WANT ARGS...: the chart must refuse to render with ARGS, saying WANT.
refuse() {
	local name=$1 want=$2
	shift 2
	local msg
	if msg=$("$tools/helm" template relay "$chart" "$@" 2>&1); then
		echo "helm.sh: $name rendered; it must be refused" >&2
		exit 1
	fi
	if ! grep -q "$want" <<<"$msg"; then
		echo "helm.sh: $name refused without saying \"$want\":" >&2
		echo "$msg" >&2
		exit 1
	fi
	echo "$name: refused ($want)"
}

check() {
	install
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	local secrets=(--set secret.values.RELAY_ADMIN_TOKEN=chart-check-admin-token --set secret.values.RELAY_SECRET_KEY=2rQ6mMx0kP1mXq9Jc3vH7bT5yN8fL4aZsE0uW6dG1hI=)
	"$tools/helm" lint --strict "$chart" "${secrets[@]}"
	render defaults "${secrets[@]}"
	render everything "${secrets[@]}" \
		--set ingest.ingress.enabled=true --set ingest.ingress.className=nginx \
		--set 'ingest.ingress.tls[0].secretName=hooks-tls' --set 'ingest.ingress.tls[0].hosts[0]=hooks.example.com' \
		--set deliver.autoscaling.enabled=true --set archive.pdb.enabled=true --set count.pdb.enabled=true \
		--set secret.values.RELAY_S3_SECRET_ACCESS_KEY=s3-secret --set s3.endpoint=http://minio:9000 \
		--set config.RELAY_RETRY_TIERS=5s\\,30s\\,2m
	# With a Secret of the operator's, the chart makes none and needs no secret values.
	render existing-secret --set secret.existingSecret=relay-secrets
	if grep -q "kind: Secret" "$work/existing-secret.yaml"; then
		echo "helm.sh: secret.existingSecret set, and the chart still made a Secret" >&2
		exit 1
	fi
	refuse no-secrets "RELAY_ADMIN_TOKEN"
	refuse too-many-replicas "above kafka.partitions" "${secrets[@]}" --set deliver.autoscaling.enabled=true --set deliver.autoscaling.maxReplicas=12
}

case "${1:-}" in
install) install ;;
check) check ;;
*)
	echo "usage: scripts/helm.sh install|check" >&2
	exit 2
	;;
esac
