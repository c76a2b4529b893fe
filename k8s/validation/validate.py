"""Offline validation of one rendered overlay (`kubectl kustomize k8s/overlays/NAME`), run by scripts/check_k8s.sh.

1. Schema: built-in kinds against the Kubernetes OpenAPI schemas bundled with `kubernetes-validate`
   (strict: unknown fields fail), for every version given; the CRD kinds this project uses (KEDA,
   Managed Prometheus) against the hand-written subsets in crd-schemas/; any other kind fails.
2. The deployment contract of this project, which no schema knows: roles and their commands, probes on
   /healthz and /readyz, non-root read-only containers, termination grace above the drain, a PDB per
   Deployment, KEDA on the request subscription, one consistent GCP project, no emulator settings.

Usage: validate.py RENDERED.yaml OVERLAY_NAME K8S_VERSION... ; exit 1 on any failure.
       validate.py --alert-policies DIR   (shape of the Cloud Monitoring policy files; not a Kubernetes kind)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
CRD_SCHEMAS = {
    (p.stem.rsplit("_", 1)[0].replace("_", "/"), p.stem.rsplit("_", 1)[1]): p
    for p in (HERE / "crd-schemas").glob("*.json")
}
ROLE_ARGS = {
    "props-coordinator": ["run", "coordinator", "dead-letter", "sweeper"],
    "props-worker": ["run", "worker"],
    "props-exporter": ["run", "exporter"],
    "props-dashboard": ["run", "dashboard"],
}
WORKER_SUBSCRIPTION = "prediction-requests-worker"
PLACEHOLDERS = ("PROJECT_ID", "set-by-overlay")
FLUSH_MARGIN_SECS = 10  # termination grace must exceed the drain by this much (ack flush, process exit)

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def check_schemas(docs: list[dict], versions: list[str]) -> list[str]:
    lines = []
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CRD_SCHEMAS:
            schema = json.loads(CRD_SCHEMAS[key].read_text())
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
            for error in errors:
                path = "/".join(str(p) for p in error.absolute_path)
                fail(f"{name_of(doc)}: {path}: {error.message}")
            lines.append(f"{name_of(doc)}: vendored CRD subset {CRD_SCHEMAS[key].name}")
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                fail(f"{name_of(doc)}: no schema for {key[0]} {key[1]} (Kubernetes {version}), and no "
                     f"vendored CRD schema in k8s/validation/crd-schemas/")
                break
            except kubernetes_validate.ValidationError as error:
                path = "/".join(str(p) for p in error.path)
                fail(f"{name_of(doc)}: Kubernetes {version}: {path}: {error.message}")
        lines.append(f"{name_of(doc)}: Kubernetes {', '.join(versions)} (strict)")
    return lines


def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def check_contract(docs: list[dict], rendered_text: str) -> None:
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)

    for placeholder in PLACEHOLDERS:
        if placeholder in rendered_text:
            fail(f"placeholder {placeholder!r} left in the output: the overlay must set it")
    for var in ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"):
        if var in rendered_text:
            fail(f"{var} appears in the output: emulator settings must never reach a cluster")

    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in by_kind.get("ConfigMap", [])}
    if len(configmaps) != 1:
        fail(f"expected exactly one ConfigMap, found {sorted(configmaps)}")
        return
    (config_name, config), = configmaps.items()
    project = config.get("GOOGLE_CLOUD_PROJECT", "")
    grace = int(config.get("PROPS_SHUTDOWN_GRACE_SECS", "20"))
    http_port = int(config.get("PROPS_HTTP_ADDR", "0.0.0.0:8080").rsplit(":", 1)[1])
    export_dir = config.get("PROPS_EXPORT_DIR", "")
    if config.get("PROPS_LOG_FORMAT") != "json":
        fail("ConfigMap: PROPS_LOG_FORMAT must be json (Cloud Logging parses it; alerts match its fields)")

    accounts = {a["metadata"]["name"]: a for a in by_kind.get("ServiceAccount", [])}
    for account in accounts.values():
        gsa = account["metadata"].get("annotations", {}).get("iam.gke.io/gcp-service-account", "")
        if gsa.split("@")[-1] != f"{project}.iam.gserviceaccount.com":
            fail(f"{name_of(account)}: Workload Identity GSA {gsa!r} is not in project {project!r} "
                 f"(GOOGLE_CLOUD_PROJECT)")

    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    if set(deployments) != set(ROLE_ARGS):
        fail(f"Deployments {sorted(deployments)} != one per role {sorted(ROLE_ARGS)}")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    policies = by_kind.get("NetworkPolicy", [])
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        spec = pod["spec"]
        labels = pod["metadata"].get("labels", {})
        where = f"Deployment/{name}"
        if spec.get("serviceAccountName") not in accounts:
            fail(f"{where}: serviceAccountName {spec.get('serviceAccountName')!r} is not rendered here")
        tgps = spec.get("terminationGracePeriodSeconds", 30)
        if tgps < grace + FLUSH_MARGIN_SECS:
            fail(f"{where}: terminationGracePeriodSeconds {tgps} < drain {grace} s + {FLUSH_MARGIN_SECS} s")
        pod_sc = spec.get("securityContext", {})
        if not pod_sc.get("runAsNonRoot"):
            fail(f"{where}: pod securityContext.runAsNonRoot is not true")
        if len(spec["containers"]) != 1:
            fail(f"{where}: expected one container")
        container = spec["containers"][0]
        if container.get("args") != ROLE_ARGS.get(name):
            fail(f"{where}: args {container.get('args')} != {ROLE_ARGS.get(name)}")
        sc = container.get("securityContext", {})
        if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                and "ALL" in sc.get("capabilities", {}).get("drop", [])
                and (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot"))):
            fail(f"{where}: container must be non-root, read-only root fs, no escalation, drop ALL")
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container.get(probe, {}).get("httpGet", {})
            port = get.get("port")
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            if get.get("path") != path or ports.get(port, port) != http_port:
                fail(f"{where}: {probe} must GET {path} on port {http_port} (PROPS_HTTP_ADDR)")
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(bound, {}):
                    fail(f"{where}: resources.{bound}.{resource} missing")
        refs = [e.get("configMapRef", {}).get("name") for e in container.get("envFrom", [])]
        if config_name not in refs:
            fail(f"{where}: envFrom does not reference ConfigMap {config_name}")
        if name == "props-exporter":
            mounts = [m["mountPath"] for m in container.get("volumeMounts", []) if not m.get("readOnly")]
            if export_dir not in mounts:
                fail(f"{where}: PROPS_EXPORT_DIR {export_dir!r} is not a writable volume mount")
        if not any(labels_match(p["spec"]["selector"], labels) for p in pdbs):
            fail(f"{where}: no PodDisruptionBudget selects its pods")
        if policies and not any(labels_match(p["spec"]["podSelector"], labels) for p in policies):
            fail(f"{where}: no NetworkPolicy selects its pods")

    scaled = by_kind.get("ScaledObject", [])
    auths = {a["metadata"]["name"] for a in by_kind.get("TriggerAuthentication", [])}
    if len(scaled) != 1:
        fail(f"expected one ScaledObject (the worker), found {len(scaled)}")
    for so in scaled:
        spec = so["spec"]
        target = spec["scaleTargetRef"]["name"]
        if target != "props-worker":
            fail(f"{name_of(so)}: scales {target!r}, not props-worker")
        if "replicas" in deployments.get("props-worker", {}).get("spec", {}):
            fail("Deployment/props-worker: sets spec.replicas, which fights the ScaledObject on every apply")
        low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not 0 <= low <= high or high > 100:
            fail(f"{name_of(so)}: replica bounds {low}..{high} are not sane")
        for trigger in spec["triggers"]:
            subscription = trigger["metadata"].get("subscriptionName", "")
            if trigger["type"] != "gcp-pubsub" or subscription != (
                    f"projects/{project}/subscriptions/{WORKER_SUBSCRIPTION}"):
                fail(f"{name_of(so)}: trigger must be gcp-pubsub on projects/{project}/subscriptions/"
                     f"{WORKER_SUBSCRIPTION}, got {trigger['type']} {subscription!r}")
            if trigger.get("authenticationRef", {}).get("name") not in auths:
                fail(f"{name_of(so)}: authenticationRef does not name a rendered TriggerAuthentication")
        summary = f"workers {low}..{high} on {WORKER_SUBSCRIPTION}"
        print(f"  contract: project {project}, {len(deployments)} Deployments, {len(pdbs)} PDBs, "
              f"grace {grace}s < termination grace, {summary}")


def check_alert_policies(directory: Path) -> None:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        fail(f"no alert policy files in {directory}")
    for path in files:
        policy = yaml.safe_load(path.read_text())
        for key in ("displayName", "combiner", "conditions", "documentation"):
            if key not in policy:
                fail(f"{path.name}: missing {key}")
        for condition in policy.get("conditions", []):
            kinds = [k for k in condition if k.startswith("condition")]
            if len(kinds) != 1 or "displayName" not in condition:
                fail(f"{path.name}: a condition needs a displayName and exactly one condition* body")
            elif kinds[0] == "conditionThreshold":
                body = condition["conditionThreshold"]
                for key in ("filter", "comparison", "duration", "aggregations"):
                    if key not in body:
                        fail(f"{path.name}: conditionThreshold lacks {key}")
            elif kinds[0] == "conditionMatchedLog":
                if "notificationRateLimit" not in policy.get("alertStrategy", {}):
                    fail(f"{path.name}: a log-match policy requires alertStrategy.notificationRateLimit")
        print(f"  alert policy: {path.name}: {policy.get('displayName')}")


def main() -> int:
    if sys.argv[1] == "--alert-policies":
        check_alert_policies(Path(sys.argv[2]))
        for message in failures:
            print(f"  FAIL {message}")
        return 1 if failures else 0
    rendered, overlay, versions = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    text = rendered.read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    print(f"[{overlay}] {len(docs)} objects")
    for line in check_schemas(docs, versions):
        print(f"  schema: {line}")
    check_contract(docs, text)
    for message in failures:
        print(f"  FAIL {message}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
