#!/usr/bin/env bash
# Validates the deployment artifacts offline: the systemd unit (systemd-analyze verify and
# security), the Kubernetes manifests (kubernetes-validate --strict, plus the cross-references
# a schema cannot see) and the Dockerfile (hadolint). Every validator is also shown a broken
# input and must reject it, so a validator that quietly accepts anything fails this script
# instead of passing it. Run from anywhere; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${PEERS_DIR:-/tmp/peers}/deploy-validate"
# The oldest Kubernetes release the manifests claim to support, and the newest whose schemas
# kubernetes-validate ships (it validates against bundled schemas and never downloads).
k8s_versions=(1.30.0 1.37.0)
# systemd-analyze security's exposure score, times ten: the unit scores 1.1 with systemd 252;
# loosening the sandbox past this should be a conscious change.
max_exposure=12

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
ok() { echo "  ok: $*"; }
# break SRC DEST SED_EXPR: a copy of SRC with one deliberate mistake, for a canary; fails if
# the edit no longer applies (the canary would then test nothing).
break_copy() {
  sed "$3" "$1" >"$2"
  if cmp -s "$1" "$2"; then fail "canary: '$3' no longer changes $1"; fi
}

echo "== deploy: validators"
command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (Debian package systemd)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/validate-requirements.txt
kv="$venv/bin/kubernetes-validate"
hadolint="$venv/bin/hadolint"
echo "  kubernetes-validate $("$kv" --version)"
echo "  $("$hadolint" --version)"
echo "  $(systemd-analyze --version | head -n1)"

# --- systemd -------------------------------------------------------------------------------
# systemd-analyze verify checks that every Exec*= program exists on the machine running it,
# and /usr/bin/oktasync (where README.md installs it) is not installed here. Rather than
# verify an edited copy, verify the unit byte for byte under --root: a scratch root holding
# the distribution's own units (for the targets the unit depends on), the unit, and
# executable stand-ins at exactly the paths the unit names. A wrong path in the unit still
# fails. verify reports most mistakes (unknown keys, bad values) as warnings with exit 0, so
# any output at all counts as a failure.
units_dir=/usr/lib/systemd/system
[ -e "$units_dir/sysinit.target" ] || units_dir=/lib/systemd/system
[ -e "$units_dir/sysinit.target" ] || fail "no systemd units found under /usr/lib or /lib"

make_root() { # ROOT UNIT_FILE: a scratch root with UNIT_FILE installed as oktasync.service
  mkdir -p "$1/etc/systemd/system" "$1/usr/lib/systemd" "$1/usr/bin"
  ln -s usr/bin "$1/bin"
  cp -r "$units_dir" "$1/usr/lib/systemd/system"
  for exe in /usr/bin/oktasync /bin/kill; do
    install -m 0755 /bin/true "$1$exe"
  done
  cp "$2" "$1/etc/systemd/system/oktasync.service"
}

verify_unit() { # UNIT_FILE: succeeds only if verify exits 0 and prints nothing
  local root out
  root=$(mktemp -d "$work/root.XXXXXX")
  make_root "$root" "$1"
  if out=$(systemd-analyze verify --root="$root" oktasync.service 2>&1) && [ -z "$out" ]; then
    return 0
  fi
  printf '%s\n' "${out:-(exit status non-zero, no output)}"
  return 1
}

echo "== deploy: systemd unit"
unit=deploy/systemd/oktasync.service
verify_unit "$unit" || fail "systemd-analyze verify $unit"
ok "systemd-analyze verify $unit: no errors, no warnings"

break_copy "$unit" "$work/broken.service" 's/^Type=notify$/Typ=notify/'
if verify_unit "$work/broken.service" >/dev/null; then
  fail "canary: systemd-analyze verify accepted a unit with an unknown key"
fi
ok "canary: systemd-analyze verify rejects an unknown key"

# The exposure score moves little for single settings (several overlap), so the settings
# the deployment promises are also required literally.
required=(
  "Type=notify" "Restart=on-failure" "DynamicUser=yes" "StateDirectory=oktasync"
  "ConfigurationDirectory=oktasync" "EnvironmentFile=-/etc/oktasync/oktasync.env"
  "ExecStart=/usr/bin/oktasync --config /etc/oktasync/oktasync.toml run"
  "ExecReload=/bin/kill -HUP \$MAINPID" "UMask=0077" "NoNewPrivileges=yes"
  "CapabilityBoundingSet=" "AmbientCapabilities=" "ProtectSystem=strict" "ProtectHome=yes"
  "PrivateTmp=yes" "PrivateDevices=yes" "ProtectKernelTunables=yes" "ProtectKernelModules=yes"
  "ProtectKernelLogs=yes" "ProtectControlGroups=yes" "ProtectClock=yes" "ProtectHostname=yes"
  "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" "RestrictNamespaces=yes"
  "RestrictRealtime=yes" "LockPersonality=yes" "MemoryDenyWriteExecute=yes"
  "SystemCallArchitectures=native" "SystemCallFilter=@system-service"
)
for line in "${required[@]}"; do
  grep -qxF "$line" "$unit" || fail "$unit: missing the line $line"
done
ok "$unit: all ${#required[@]} promised settings present"

root=$(mktemp -d "$work/root.XXXXXX")
make_root "$root" "$unit"
if ! out=$(systemd-analyze security --offline=yes --no-pager --root="$root" \
  --threshold="$max_exposure" oktasync.service 2>&1); then
  printf '%s\n' "$out" | grep -v '✓' >&2 || true
  fail "systemd-analyze security: exposure above $((max_exposure / 10)).$((max_exposure % 10))"
fi
ok "systemd-analyze security: ${out##*→ }"

env_example=deploy/systemd/oktasync.env.example
if bad=$(grep -vE '^(#.*)?$' "$env_example" | grep -vE '^OKTASYNC_[A-Z0-9_]+='); then
  fail "$env_example: not an OKTASYNC_* assignment: $bad"
fi
if grep -E '^OKTASYNC_OKTA__API_TOKEN=' "$env_example" | grep -vq 'replace-with'; then
  fail "$env_example: the API token must be a placeholder"
fi
ok "$env_example: only OKTASYNC_* assignments, placeholder secrets"

# --- Kubernetes ----------------------------------------------------------------------------
# kubernetes-validate prints INFO for a resource that passed and WARN for one it has no
# schema for (a misspelt kind or apiVersion), with exit 0: only INFO lines count as a pass,
# and every file must have passed at least one resource (an empty file validates nothing).
validate_manifests() { # FILE...: kubernetes-validate --strict against each version
  local v out f
  for v in "${k8s_versions[@]}"; do
    out=$("$kv" --strict -k "$v" "$@" 2>&1) || {
      printf '%s\n' "$out"
      return 1
    }
    if grep -v '^INFO ' <<<"$out"; then return 1; fi
    for f in "$@"; do
      grep -qF "INFO $f passed" <<<"$out" || {
        echo "$f: no resource validated"
        return 1
      }
    done
  done
}

# What no schema sees: kustomization.yaml lists every manifest (the Secret example excepted,
# so `apply -k` never overwrites real credentials); selectors select the pod template;
# referenced ConfigMaps, PVCs, Secrets and named ports exist; the config parses as TOML, is
# mounted where --config points and listens beyond loopback; the pod keeps its hardening.
check_refs() { # VARIANT_DIR
  "$venv/bin/python" - "$1" <<'PY'
import pathlib, sys, tomllib, yaml

d = pathlib.Path(sys.argv[1])
problems = []
def check(cond, msg):
    if not cond:
        problems.append(msg)

files = sorted(p.name for p in d.glob("*.yaml") if p.name != "kustomization.yaml")
kust = yaml.safe_load((d / "kustomization.yaml").read_text())
listed = kust.get("resources", [])
check(sorted(listed) == [f for f in files if f != "secret.example.yaml"],
      f"kustomization.yaml resources {listed} != manifests {files} less secret.example.yaml")

objs = {}
for f in files:
    for doc in yaml.safe_load_all((d / f).read_text()):
        if doc:
            objs[(doc["kind"], doc["metadata"]["name"])] = doc

def has(kind, name):
    return (kind, name) in objs

def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

deployments = [o for (k, _), o in objs.items() if k == "Deployment"]
check(len(deployments) == 1, "expected exactly one Deployment")
for dep in deployments:
    tpl = dep["spec"]["template"]
    labels, pod = tpl["metadata"].get("labels", {}), tpl["spec"]
    check(selects(dep["spec"]["selector"]["matchLabels"], labels),
          "Deployment selector does not match its pod labels")
    for (kind, name), o in objs.items():
        if kind == "Service":
            check(selects(o["spec"].get("selector"), labels), f"Service {name} selects no pod")
        if kind == "PodDisruptionBudget":
            check(selects(o["spec"]["selector"].get("matchLabels"), labels),
                  f"PodDisruptionBudget {name} selects no pod")
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot is not true")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          "pod seccompProfile is not RuntimeDefault")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for v in volumes.values():
        if "configMap" in v:
            check(has("ConfigMap", v["configMap"]["name"]), f"volume {v['name']}: no such ConfigMap")
        if "persistentVolumeClaim" in v:
            check(has("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]),
                  f"volume {v['name']}: no such PersistentVolumeClaim")
    for c in pod["containers"]:
        csc = c.get("securityContext", {})
        check(csc.get("readOnlyRootFilesystem") is True, f"{c['name']}: root filesystem writable")
        check(csc.get("allowPrivilegeEscalation") is False, f"{c['name']}: privilege escalation allowed")
        check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{c['name']}: capabilities not dropped")
        check("limits" in c.get("resources", {}), f"{c['name']}: no resource limits")
        ports = {p.get("name") for p in c.get("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            check(port in ports, f"{c['name']}: {probe} port {port!r} is not a container port")
        for (kind, name), o in objs.items():
            if kind == "Service":
                for p in o["spec"]["ports"]:
                    check(p.get("targetPort") in ports, f"Service {name}: no container port {p.get('targetPort')!r}")
        for e in c.get("envFrom", []):
            if "secretRef" in e:
                check(has("Secret", e["secretRef"]["name"]),
                      f"{c['name']}: envFrom Secret {e['secretRef']['name']} not in secret.example.yaml")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        for m in mounts.values():
            check(m in volumes, f"{c['name']}: volumeMount {m} has no volume")
        args = c.get("args", [])
        config = args[args.index("--config") + 1] if "--config" in args else None
        check(config is not None, f"{c['name']}: no --config argument")
        if config:
            cdir, cfile = config.rsplit("/", 1)
            cm = volumes.get(mounts.get(cdir, ""), {}).get("configMap", {}).get("name")
            check(has("ConfigMap", cm or ""), f"{c['name']}: {cdir} is not a mounted ConfigMap")
            if has("ConfigMap", cm or ""):
                text = objs[("ConfigMap", cm)]["data"].get(cfile)
                check(text is not None, f"ConfigMap {cm} has no key {cfile}")
                try:
                    listen = tomllib.loads(text or "").get("server", {}).get("listen", "")
                    check(not listen.startswith(("127.", "localhost", "[::1]")),
                          f"ConfigMap {cm}: server.listen {listen!r} is unreachable for probes")
                except tomllib.TOMLDecodeError as e:
                    problems.append(f"ConfigMap {cm}: {cfile} is not TOML: {e}")

for p in problems:
    print(f"{d}: {p}")
sys.exit(1 if problems else 0)
PY
}

echo "== deploy: Kubernetes manifests (kubernetes-validate --strict, ${k8s_versions[*]})"
variants=(deploy/k8s/*/)
[ "${#variants[@]}" -ge 2 ] || fail "expected deploy/k8s/sqlite and deploy/k8s/postgres"
for dir in "${variants[@]}"; do
  dir=${dir%/}
  mapfile -t manifests < <(find "$dir" -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml | sort)
  validate_manifests "${manifests[@]}" || fail "kubernetes-validate $dir"
  ok "$dir: ${#manifests[@]} files valid (strict)"
  check_refs "$dir" || fail "cross-references in $dir"
  ok "$dir: kustomization, selectors, references, config and hardening consistent"
  # What `kubectl apply -k` actually sends. kubectl is on the project's machine image; where
  # it is missing, the checks above still cover every file the kustomization lists.
  if command -v kubectl >/dev/null; then
    kubectl kustomize "$dir" >"$work/rendered.yaml" || fail "kubectl kustomize $dir"
    (cd "$work" && validate_manifests rendered.yaml) || fail "kubernetes-validate of kubectl kustomize $dir"
    ok "$dir: kubectl kustomize output valid (strict)"
  else
    echo "  skip: kubectl not installed, kustomize output not rendered"
  fi
done

mkdir "$work/broken-k8s"
cp deploy/k8s/sqlite/*.yaml "$work/broken-k8s/"
break_copy deploy/k8s/sqlite/deployment.yaml "$work/broken-k8s/deployment.yaml" 's/^  replicas:/  replica:/'
if validate_manifests "$work/broken-k8s/deployment.yaml" >/dev/null; then
  fail "canary: kubernetes-validate accepted a Deployment with an unknown field"
fi
ok "canary: kubernetes-validate --strict rejects an unknown field"
cp deploy/k8s/sqlite/deployment.yaml "$work/broken-k8s/"
break_copy deploy/k8s/sqlite/service.yaml "$work/broken-k8s/service.yaml" \
  's/^    app.kubernetes.io\/name: oktasync$/    app.kubernetes.io\/name: other/'
if check_refs "$work/broken-k8s" >/dev/null; then
  fail "canary: the cross-reference check accepted a Service selecting no pod"
fi
ok "canary: the cross-reference check rejects a Service selecting no pod"

# --- Docker --------------------------------------------------------------------------------
# An explicit config makes the result independent of any hadolint.yaml on the machine, and
# the style threshold fails on every finding. No rule is ignored.
echo "== deploy: Dockerfile (hadolint)"
printf 'failure-threshold: style\n' >"$work/hadolint.yaml"
"$hadolint" --config "$work/hadolint.yaml" Dockerfile || fail "hadolint Dockerfile"
ok "hadolint Dockerfile: no findings"
printf 'FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n' >"$work/Dockerfile.broken"
if "$hadolint" --config "$work/hadolint.yaml" "$work/Dockerfile.broken" >/dev/null 2>&1; then
  fail "canary: hadolint accepted an untagged base image and unpinned apt packages"
fi
ok "canary: hadolint rejects :latest and unpinned apt-get install"
for pattern in target/ .git/ data/; do
  grep -qxF "$pattern" .dockerignore || fail ".dockerignore does not exclude $pattern"
done
ok ".dockerignore excludes target/, .git/, data/"

echo "deploy: all checks passed"
