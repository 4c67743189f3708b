#!/usr/bin/env bash
# Checks the deployment files without a container engine or a cluster:
# - deploy/compose.yaml against the Compose Specification's JSON schema (the copy that
#   check-jsonschema ships, so no download);
# - deploy/kubernetes/*.yaml against Kubernetes' own schemas (kubernetes-validate ships them),
#   strict: an unknown field is an error;
# - deploy/check_consistency.py: every AGENTGATE__* variable names a setting of
#   config/default.toml, the gateways keep nothing on their own disk, the files agree;
# - deploy/nginx.conf with `nginx -t`, on a copy whose upstream host names are 127.0.0.1 (nginx
#   resolves them while it reads the file, and the compose service names resolve only there).
# Exits non-zero on the first failure. Run from anywhere: bash deploy/validate.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Kubernetes versions the manifests must be valid for: the oldest still commonly run, and the
# newest the validator knows.
KUBERNETES_VERSIONS=(1.30.0 1.37.0)
CHECK_JSONSCHEMA=check-jsonschema==0.39.0
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0

pip_install() {
  if command -v pip3 >/dev/null 2>&1; then pip=pip3; else pip=pip; fi
  "$pip" install -q "$@" || "$pip" install -q --break-system-packages "$@"
  hash -r
}
command -v check-jsonschema >/dev/null 2>&1 || pip_install "$CHECK_JSONSCHEMA"
command -v kubernetes-validate >/dev/null 2>&1 || pip_install "$KUBERNETES_VALIDATE"
python3 -c 'import ruamel.yaml' 2>/dev/null || pip_install ruamel.yaml
python3 -c 'import tomllib' 2>/dev/null || python3 -c 'import tomli' 2>/dev/null || pip_install tomli

echo "compose: deploy/compose.yaml"
check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml

manifests=()
for file in deploy/kubernetes/*.yaml; do
  [ "$(basename "$file")" = kustomization.yaml ] || manifests+=("$file")
done
for version in "${KUBERNETES_VERSIONS[@]}"; do
  echo "kubernetes $version: ${manifests[*]}"
  # It exits 1 on an invalid resource, but 0 (with a warning) on a kind it has no schema for,
  # such as a misspelt one: every resource must say "passed", and nothing else may be said.
  out=$(kubernetes-validate --strict -k "$version" "${manifests[@]}" 2>&1) || { echo "$out"; exit 1; }
  echo "$out"
  if echo "$out" | grep -v ' passed for resource ' | grep -q .; then
    echo "kubernetes $version: not every resource passed" >&2
    exit 1
  fi
  passed=$(echo "$out" | grep -c ' passed for resource ' || true)
  documents=$(cat "${manifests[@]}" | grep -c '^kind:' || true)
  if [ "$passed" -ne "$documents" ]; then
    echo "kubernetes $version: $passed of $documents resources passed" >&2
    exit 1
  fi
done

echo "consistency: deploy/check_consistency.py"
python3 deploy/check_consistency.py .

echo "nginx: deploy/nginx.conf"
if [ -x /usr/sbin/nginx ]; then nginx=/usr/sbin/nginx; else nginx=$(command -v nginx); fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
sed -E 's/^([[:space:]]*server[[:space:]]+)[A-Za-z][A-Za-z0-9.-]*(:[0-9]+)/\1127.0.0.1\2/' \
  deploy/nginx.conf >"$scratch/nginx.conf"
sed -i "s#^pid .*#pid $scratch/nginx.pid;#" "$scratch/nginx.conf"
"$nginx" -t -q -e stderr -p "$scratch" -c "$scratch/nginx.conf"
echo "nginx: syntax ok"

echo "deployment manifests: all checks passed"
