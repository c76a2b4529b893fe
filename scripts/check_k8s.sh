#!/usr/bin/env bash
# Offline checks of the deployment manifests (no cluster, no registry, no docker):
#   1. render every overlay in k8s/overlays/ with `kubectl kustomize`;
#   2. validate each rendering: built-in kinds strictly against the Kubernetes schemas bundled with
#      kubernetes-validate (for each version in K8S_VERSIONS), the CRD kinds (KEDA ScaledObject and
#      TriggerAuthentication, Managed Prometheus PodMonitoring and Rules) against the hand-written subsets in
#      k8s/validation/crd-schemas/, any other kind fails; then the project's deployment contract
#      (k8s/validation/validate.py says what);
#   3. check the shape of the Cloud Monitoring alert policies in k8s/alert-policies/;
#   4. check that .dockerignore keeps target/, .emulators/, out/ and .git out of the image's build context;
#   5. scan every rendering and the Dockerfile with checkov. Any failed check fails this script. An accepted finding is skipped
#      only by a `checkov.io/skipN: CKV_K8S_<id>=<reason>` annotation on the object (with a comment beside
#      it), or a `# checkov:skip=CKV_DOCKER_<id>: <reason>` line in the Dockerfile; a skip without a reason
#      fails too. Every skip is printed with its reason.
# Needs kubectl (with its built-in kustomize) and python3 >= 3.9 with venv/pip; the Python tools are installed
# with pinned versions into $K8S_VENV (default .venv-k8s/) from PyPI on first use. Renderings and the
# checkov report are left in out/k8s/.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

K8S_VENV=${K8S_VENV:-.venv-k8s}
# Oldest GKE minor still in support and the newest schema kubernetes-validate ships.
K8S_VERSIONS=${K8S_VERSIONS:-"1.31.0 1.37.0"}
REQUIREMENTS=("kubernetes-validate==1.37.0" "checkov==3.3.30")
OUT=out/k8s

command -v kubectl >/dev/null || { echo "check_k8s: kubectl not found (it renders the overlays)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "check_k8s: python3 not found" >&2; exit 1; }

stamp="$K8S_VENV/.requirements"
if [ ! -x "$K8S_VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${REQUIREMENTS[*]}" ]; then
  echo "== installing ${REQUIREMENTS[*]} into $K8S_VENV"
  python3 -m venv "$K8S_VENV"
  echo '*' > "$K8S_VENV/.gitignore"   # keep the venv out of git without touching .gitignore
  "$K8S_VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
  echo "${REQUIREMENTS[*]}" > "$stamp"
fi
py="$K8S_VENV/bin/python"

rm -rf "$OUT" && mkdir -p "$OUT"
overlays=()
for dir in k8s/overlays/*/; do
  name=$(basename "$dir")
  overlays+=("$name")
  kubectl kustomize "$dir" > "$OUT/$name.yaml"
done
[ ${#overlays[@]} -gt 0 ] || { echo "check_k8s: no overlays in k8s/overlays/" >&2; exit 1; }
echo "== rendered ${overlays[*]} with kubectl kustomize ($(kubectl version --client 2>/dev/null | grep -i kustomize || echo 'kustomize version unknown'))"

status=0
echo "== schemas (Kubernetes ${K8S_VERSIONS// /, }; vendored CRD subsets) and deployment contract"
for name in "${overlays[@]}"; do
  # shellcheck disable=SC2086  # K8S_VERSIONS is a list
  "$py" k8s/validation/validate.py "$OUT/$name.yaml" "$name" $K8S_VERSIONS || status=1
done
echo "== Cloud Monitoring alert policies"
"$py" k8s/validation/validate.py --alert-policies k8s/alert-policies || status=1

echo "== .dockerignore"
for entry in target/ .emulators/ out/ .git; do
  if ! grep -qxF -e "$entry" -e "/$entry" -e "${entry%/}" -e "/${entry%/}" .dockerignore 2>/dev/null; then
    echo "  FAIL .dockerignore does not exclude $entry"; status=1
  fi
done
echo "  excludes target/ .emulators/ out/ .git"

echo "== checkov $("$K8S_VENV/bin/checkov" --version) (kubernetes and dockerfile frameworks, offline)"
files=(-f Dockerfile)
for name in "${overlays[@]}"; do files+=(-f "$OUT/$name.yaml"); done
# BC_SKIP_MAPPING and --skip-download keep checkov from calling its vendor's API (no network needed).
BC_SKIP_MAPPING=TRUE "$K8S_VENV/bin/checkov" "${files[@]}" --framework kubernetes dockerfile --skip-download \
  --output json > "$OUT/checkov.json" 2> "$OUT/checkov.stderr" || true
"$py" - "$OUT/checkov.json" <<'EOF' || status=1
import json, sys
report = json.load(open(sys.argv[1]))
reports = report if isinstance(report, list) else [report]
bad = 0
for r in reports:
    s, res = r["summary"], r["results"]
    print(f"  {r['check_type']}: {s['resource_count']} resources: {s['passed']} passed, {s['failed']} failed, "
          f"{s['skipped']} skipped, {s['parsing_errors']} parsing errors")
    if s["resource_count"] == 0 or s["parsing_errors"]:
        bad = 1
        print("  FAIL checkov parsed nothing or hit parsing errors")
    for c in res["failed_checks"]:
        bad = 1
        print(f"  FAIL {c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})")
    for c in res["skipped_checks"]:
        reason = (c["check_result"].get("suppress_comment") or "").strip()
        if len(reason) < 10 or reason.lower() == "no comment provided":  # checkov's filler for no reason
            bad = 1
            print(f"  FAIL {c['check_id']} skipped without a justification: {c['resource']}")
        else:
            print(f"  accepted {c['check_id']} ({c['check_name']}) on {c['resource']}: {reason}")
sys.exit(bad)
EOF

elapsed=$(( $(date +%s) - start ))
if [ "$status" = 0 ]; then
  echo "check_k8s: OK: ${#overlays[@]} overlays (${overlays[*]}) rendered, validated and scanned, Dockerfile scanned, in ${elapsed}s"
else
  echo "check_k8s: FAILED (see FAIL lines above; renderings in $OUT/) after ${elapsed}s" >&2
fi
exit "$status"
