"""The Helm chart: lint and render it with Helm's own Go SDK (helm-python-sdk, Helm v4 compiled in; no helm
binary, no cluster) for the default values and every deploy/helm/ci-values/*.yaml, write each rendered object
to a file for kubernetes-validate (run by deploy/check.sh), and check what a schema cannot: the wiring.

Per value set:
- the values pass values.schema.json (the render enforces it; bad values must be refused too);
- every LogiCore container's environment, with its secrets filled in and the ConfigMap's file written where
  LOGICORE_CONFIG points, is accepted and fully read by `logicore config check` (as in compose);
- containers listen where their ports, probes and Services say; the gateway's upstreams are the headless
  Services' full DNS names (and, for the default release, exactly the names docs/discovery.md shows);
- the security context, probes, the ConfigMap mounted as a directory (no subPath), SERVICE_ADVERTISE_ADDRESS
  from the pod IP, secret references that exist, the migration hook, HPA/PDB/NetworkPolicy coverage;
- the PrometheusRule carries deploy/prometheus/rules.yml unchanged (promtool checks the rendered copy).

Usage: helm_check.py OUT_DIR   (writes OUT_DIR/<set>/<n>-<kind>-<name>.yaml, CRD objects under OUT_DIR/crds)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import helm_python as helm
import yaml

from common import ROOT, SAMPLE_JWT_SECRET, check_environment, fail, failures, finish, image_env, listening_ports, ok

CHART = ROOT / "deploy/helm/logicore"
CI_VALUES = ROOT / "deploy/helm/ci-values"
KUBE_VERSION = "v1.33.0"
# Kinds whose schemas kubernetes-validate does not have (CRDs of the Prometheus Operator).
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
COMPONENTS = ("gateway", "users", "inventory", "orders")
# Placeholder values for secret keys, by key name; a key the check does not know fails.
SECRET_SAMPLES = {"jwt-secret": SAMPLE_JWT_SECRET, "password": "check-only-password",
                  "db-password": "check-only-password",
                  "rabbitmq-url": "amqp://logicore:check-only@rabbitmq.messaging:5672/%2f"}
# Pod fields the downward API fills in.
FIELD_SAMPLES = {"status.podIP": "10.1.2.3", "metadata.name": "logicore-users-5d9c7-abcde",
                 "metadata.namespace": "logicore"}


def value_sets() -> list[tuple[str, dict, str, str]]:
    """(label, values, release, namespace). The default set uses the names docs/discovery.md shows; the CI
    sets another release and namespace, so that no name is right by accident."""
    sets = [("default", {}, "logicore", "logicore")]
    for path in sorted(CI_VALUES.glob("*.yaml")):
        sets.append((path.stem, yaml.safe_load(path.read_text()) or {}, "shop", "prod"))
    return sets


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    print(f"helm-python-sdk {helm.__version__}, Helm SDK {helm.helm_sdk_version()}")
    chart = helm.Chart.load(CHART)
    check_bad_values_refused(chart)
    sets = value_sets()
    if len(sets) < 3:
        fail(f"only {len(sets)} value sets: the default and at least two in {CI_VALUES}")
    for label, values, release, namespace in sets:
        print(f"-- value set {label} (release {release}, namespace {namespace})")
        lint = helm.lint(CHART, values, strict=True, namespace=namespace, kube_version=KUBE_VERSION)
        problems = [m for m in lint["messages"] if m["severity"] >= 2] + [{"error": e} for e in lint["errors"]]
        if problems:
            for problem in problems:
                fail(f"{label}: helm lint (strict): {problem.get('path', '')} {problem['error']}")
        else:
            ok(f"{label}: helm lint --strict (kube {KUBE_VERSION}) clean "
               f"({len(lint['messages'])} informational message(s))")
        try:
            rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
        except helm.HelmError as error:
            fail(f"{label}: render failed: {error}")
            continue
        objects = []
        for template, text in sorted(rendered.items()):
            if template.endswith("NOTES.txt"):
                continue
            for document in yaml.safe_load_all(text):
                if document:
                    objects.append(document)
        directory = out / label
        directory.mkdir(parents=True, exist_ok=True)
        for index, obj in enumerate(objects):
            name = f"{index:02d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
            target = out / "crds" / f"{label}-{name}" if obj["kind"] in CRD_KINDS else directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(yaml.safe_dump(obj, sort_keys=False))
        kinds = sorted({o["kind"] for o in objects})
        ok(f"{label}: rendered {len(objects)} objects ({', '.join(kinds)})")
        Wiring(label, release, namespace, objects, chart.merge_values(values), out).check()
    chart.close()
    return finish("Helm chart")


def check_bad_values_refused(chart) -> None:
    for bad, what in (({"gateway": {"service": {"type": "Public"}}}, "an unknown Service type"),
                      ({"users": {"replicas": 3}}, "a misspelt key"),
                      ({"auth": {"jwtSecret": "too-short"}}, "a JWT secret under 32 bytes")):
        try:
            chart.render(bad, name="logicore", namespace="logicore", is_install=True)
            fail(f"values.schema.json accepted {what}: {bad}")
        except helm.HelmError:
            ok(f"values.schema.json refuses {what}")


class Wiring:
    def __init__(self, label, release, namespace, objects, merged, out):
        self.label, self.release, self.namespace = label, release, namespace
        self.objects, self.v, self.out = objects, merged, out
        self.by_kind: dict[str, dict[str, dict]] = {}
        for obj in objects:
            self.by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
        self.volumes: dict[str, dict] = {}
        self.reported = len(failures)

    def fail(self, message):
        fail(f"{self.label}: {message}")

    def ok(self, message):
        """Reports success only when nothing failed since the previous report (the step's own checks)."""
        if len(failures) == self.reported:
            ok(f"{self.label}: {message}")
        self.reported = len(failures)

    @property
    def fullname(self) -> str:
        if self.v.get("fullnameOverride"):
            return self.v["fullnameOverride"]
        return self.release if "logicore" in self.release else f"{self.release}-logicore"

    def check(self):
        deployments = self.by_kind.get("Deployment", {})
        by_component = {d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component"): d
                        for d in deployments.values()}
        if sorted(by_component) != sorted(COMPONENTS):
            self.fail(f"Deployments for {sorted(by_component)}, expected {sorted(COMPONENTS)}")
            return
        ports = {component: self.check_deployment(component, deployment)
                 for component, deployment in by_component.items()}
        self.check_services(by_component)
        self.check_gateway_upstreams(by_component["gateway"], ports)
        self.check_autoscaling_and_budgets(by_component)
        self.check_network_policies(by_component)
        self.check_migration()
        self.check_monitoring()

    # --- pods ------------------------------------------------------------------------------------------
    def pod_environment(self, container):
        """(env, files, helper variables) as the container would see them, or None after a failure."""
        env: dict[str, str] = dict(image_env())
        files: dict[str, str] = {}
        helpers: set[str] = set()
        for entry in container.get("env", []):
            name = entry["name"]
            source = entry.get("valueFrom", {})
            if "value" in entry:
                value = str(entry["value"])
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                if not self.secret_exists(ref["name"], ref["key"]):
                    self.fail(f"{container['name']}: {name} refers to Secret {ref['name']} key {ref['key']}, "
                              f"which the chart neither creates nor is told exists")
                    return None
                if ref["key"] not in SECRET_SAMPLES:
                    self.fail(f"{container['name']}: no sample value for secret key {ref['key']} in helm_check.py")
                    return None
                value = SECRET_SAMPLES[ref["key"]]
            elif "fieldRef" in source:
                value = FIELD_SAMPLES[source["fieldRef"]["fieldPath"]]
            else:
                self.fail(f"{container['name']}: {name}: unsupported valueFrom {source}")
                return None
            # Kubernetes expands $(VAR) from variables defined earlier in the list.
            for used in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value):
                if used in env:
                    value = value.replace(f"$({used})", env[used])
                    helpers.add(used)
            env[name] = value
        if "LOGICORE_CONFIG" in env:
            mounted = self.config_file(container, env["LOGICORE_CONFIG"])
            if mounted is None:
                return None
            files["logicore.toml"] = mounted
            env["LOGICORE_CONFIG"] = "{dir}/logicore.toml"
        return env, files, helpers

    def config_file(self, container, path: str):
        directory, filename = path.rsplit("/", 1)
        for mount in container.get("volumeMounts", []):
            if mount["mountPath"] == directory:
                if "subPath" in mount:
                    self.fail(f"{container['name']}: the config is a subPath mount (never updated in place)")
                    return None
                cm_name = self.volumes.get(mount["name"], {}).get("configMap", {}).get("name")
                configmap = self.by_kind.get("ConfigMap", {}).get(cm_name)
                if not configmap or filename not in configmap.get("data", {}):
                    self.fail(f"{container['name']}: LOGICORE_CONFIG={path}, but {directory} is not a ConfigMap "
                              f"with a key {filename}")
                    return None
                return configmap["data"][filename]
        self.fail(f"{container['name']}: LOGICORE_CONFIG={path} is in no mounted directory")
        return None

    def secret_exists(self, name: str, key: str) -> bool:
        secret = self.by_kind.get("Secret", {}).get(name)
        if secret is not None:
            return key in secret.get("data", {})
        declared = {(self.v["auth"]["existingSecret"], self.v["auth"]["existingSecretKey"]),
                    (self.v["database"]["existingSecret"], self.v["database"]["existingSecretPasswordKey"]),
                    (self.v["rabbitmq"]["existingSecret"], self.v["rabbitmq"]["existingSecretKey"])}
        return (name, key) in declared

    def check_deployment(self, component, deployment):
        pod = deployment["spec"]["template"]["spec"]
        self.volumes = {v["name"]: v for v in pod.get("volumes", [])}
        (container,) = pod["containers"]
        psc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
        wanted = [(psc.get("runAsNonRoot") or sc.get("runAsNonRoot"), "runAsNonRoot"),
                  (sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem"),
                  (sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false"),
                  (sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL"),
                  ((psc.get("seccompProfile") or sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
                   "seccomp RuntimeDefault")]
        missing = [what for good, what in wanted if not good]
        if missing:
            self.fail(f"{component}: security context lacks {', '.join(missing)}")
        if container.get("args") != [component]:
            self.fail(f"{component}: runs {container.get('args')}, expected [{component!r}]")
        advertise = next((e for e in container.get("env", []) if e["name"] == "SERVICE_ADVERTISE_ADDRESS"), None)
        if not advertise or advertise.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "status.podIP":
            self.fail(f"{component}: SERVICE_ADVERTISE_ADDRESS is not the pod IP (downward API)")
        probes = {kind: container.get(f"{kind}Probe", {}).get("httpGet", {})
                  for kind in ("startup", "liveness", "readiness")}
        readiness = self.v["gateway"]["readinessPath"] if component == "gateway" else "/readyz"
        got = (probes["liveness"].get("path"), probes["readiness"].get("path"), probes["startup"].get("path"))
        if got != ("/health", readiness, "/health"):
            self.fail(f"{component}: probes {probes}; want liveness /health, readiness {readiness}, startup /health")
        if not container.get("resources", {}).get("requests"):
            self.fail(f"{component}: no resource requests")
        if self.v["topologySpreadConstraints"] and not pod.get("topologySpreadConstraints"):
            self.fail(f"{component}: topologySpreadConstraints missing")
        environment = self.pod_environment(container)
        if environment is None:
            return None
        env, files, helpers = environment
        config = check_environment(f"{self.label} {component} pod", env, config_files=files,
                                   helper_variables=helpers)
        if config is None:
            return None
        listening = listening_ports(config, component)
        declared = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if any(declared.get(name) != port for name, port in listening.items()):
            self.fail(f"{component}: listens on {listening} but declares containerPorts {declared}")
        else:
            self.ok(f"{component}: security context, probes (/health, {readiness}), ports {listening} consistent")
        return listening

    # --- services and discovery --------------------------------------------------------------------------
    def check_services(self, by_component):
        services = self.by_kind.get("Service", {})
        for name, service in services.items():
            spec = service["spec"]
            component = spec["selector"].get("app.kubernetes.io/component")
            public = name == f"{self.fullname}-gateway"
            if not public and spec.get("type", "ClusterIP") != "ClusterIP":
                self.fail(f"Service {name} is {spec['type']}; only the gateway's public Service may be")
            if public and any(p["targetPort"] != "http" for p in spec["ports"]):
                self.fail(f"the public gateway Service exposes more than its public port: {spec['ports']}")
            target = by_component.get(component)
            if target is None:
                self.fail(f"Service {name} selects no Deployment ({spec['selector']})")
                continue
            pod_labels = target["spec"]["template"]["metadata"]["labels"]
            if any(pod_labels.get(k) != v for k, v in spec["selector"].items()):
                self.fail(f"Service {name} selector {spec['selector']} does not match the {component} pods")
            names = {p["name"] for p in target["spec"]["template"]["spec"]["containers"][0]["ports"]}
            for port in spec["ports"]:
                if port["targetPort"] not in names:
                    self.fail(f"Service {name} targets port {port['targetPort']!r}, not a port of {component}")
        for component in COMPONENTS[1:]:
            headless = services.get(f"{self.fullname}-{component}-headless")
            if not headless or headless["spec"].get("clusterIP") != "None":
                self.fail(f"no headless Service for {component}")
        public = services.get(f"{self.fullname}-gateway", {}).get("spec", {})
        self.ok(f"Services: gateway public ({public.get('type')}), admin and services ClusterIP, "
                f"a headless Service per service, selectors and target ports match the pods")

    def check_gateway_upstreams(self, gateway, ports):
        env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
        if env.get("DISCOVERY_BACKEND") != "dns":
            self.fail(f"gateway: DISCOVERY_BACKEND={env.get('DISCOVERY_BACKEND')!r}, expected dns")
        services = self.by_kind.get("Service", {})
        for variable, component in (("USER_SERVICE_URL", "users"), ("INVENTORY_SERVICE_URL", "inventory"),
                                    ("ORDER_SERVICE_URL", "orders")):
            url = urlsplit(env.get(variable) or "")
            name = f"{self.fullname}-{component}-headless"
            expected_host = f"{name}.{self.namespace}.svc.cluster.local"
            listening = (ports.get(component) or {}).get("http")
            if listening is None:
                continue  # its pod's configuration already failed
            if url.hostname != expected_host or url.port != listening:
                self.fail(f"gateway: {variable}={env.get(variable)}; expected http://{expected_host}:{listening}")
                continue
            published = [p["port"] for p in services[name]["spec"]["ports"]]
            if listening not in published:
                self.fail(f"{name} publishes {published}, the pods listen on {listening}")
        if self.label == "default":
            documented = (ROOT / "docs/discovery.md").read_text()
            for variable in ("USER_SERVICE_URL", "INVENTORY_SERVICE_URL", "ORDER_SERVICE_URL"):
                if f"{variable}={env.get(variable)}" not in documented:
                    self.fail(f"gateway: {variable}={env.get(variable)} is not what docs/discovery.md shows")
        self.ok("gateway: DNS discovery over the headless Services' full names and the services' real ports")

    def check_autoscaling_and_budgets(self, by_component):
        hpas = {h["spec"]["scaleTargetRef"]["name"]: h
                for h in self.by_kind.get("HorizontalPodAutoscaler", {}).values()}
        pdbs = self.by_kind.get("PodDisruptionBudget", {})
        for component, deployment in by_component.items():
            name = deployment["metadata"]["name"]
            autoscaled = self.v[component]["autoscaling"]["enabled"]
            if autoscaled != (name in hpas):
                self.fail(f"{component}: autoscaling.enabled={autoscaled} but HPA present={name in hpas}")
            if autoscaled and "replicas" in deployment["spec"]:
                self.fail(f"{component}: replicas set although an HPA owns the count (reset on every upgrade)")
            if not autoscaled and deployment["spec"].get("replicas") != self.v[component]["replicaCount"]:
                self.fail(f"{component}: replicas {deployment['spec'].get('replicas')}, values say "
                          f"{self.v[component]['replicaCount']}")
            budgeted = [p for p in pdbs.values()
                        if p["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]]
            if bool(budgeted) != self.v[component]["pdb"]["enabled"]:
                self.fail(f"{component}: pdb.enabled={self.v[component]['pdb']['enabled']}, "
                          f"PDBs found {len(budgeted)}")
        self.ok(f"HPAs for {sorted(hpas) or 'none'}; {len(pdbs)} PDB(s), each selecting its component's pods")

    def check_network_policies(self, by_component):
        policies = {name: p for name, p in self.by_kind.get("NetworkPolicy", {}).items()
                    if "helm.sh/hook" not in p["metadata"].get("annotations", {})}
        if not self.v["networkPolicy"]["enabled"]:
            if self.by_kind.get("NetworkPolicy"):
                self.fail(f"networkPolicy.enabled=false but {sorted(self.by_kind['NetworkPolicy'])} rendered")
            else:
                self.ok("no NetworkPolicies (disabled)")
            return
        gateway_labels = by_component["gateway"]["spec"]["template"]["metadata"]["labels"]
        metrics_from = self.v["networkPolicy"]["metricsFrom"]
        for component, deployment in by_component.items():
            selector = deployment["spec"]["selector"]["matchLabels"]
            policy = next((p for p in policies.values()
                           if p["spec"]["podSelector"].get("matchLabels") == selector), None)
            if policy is None:
                self.fail(f"{component}: no NetworkPolicy selects its pods")
                continue
            spec = policy["spec"]
            if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
                self.fail(f"{component}: policy types {spec.get('policyTypes')}")
            for rule in spec.get("ingress", []):
                sources = rule.get("from") or []
                ports = [p["port"] for p in rule.get("ports", [])]
                if component == "gateway" and ports == ["http"]:
                    continue  # the public port: networkPolicy.gatewayFrom, anyone by default
                if not sources:
                    self.fail(f"{component}: ingress on {ports} from everyone")
                    continue
                for source in sources:
                    labels = source.get("podSelector", {}).get("matchLabels")
                    in_namespace = labels and "namespaceSelector" not in source
                    from_gateway = in_namespace and \
                        all(gateway_labels.get(k) == v for k, v in labels.items())
                    # The users service alone also admits the other services: they fetch its public signing
                    # keys (JWKS) and register external users there (docs/identity.md).
                    from_service = component == "users" and in_namespace and any(
                        all(by_component[other]["spec"]["template"]["metadata"]["labels"].get(k) == v
                            for k, v in labels.items())
                        for other in by_component if other not in ("gateway", "users"))
                    if not from_gateway and not from_service and source not in metrics_from:
                        self.fail(f"{component}: ingress on {ports} from {source}: neither the gateway, nor a "
                                  f"service fetching the users service's keys, nor the metrics scraper")
            egress_ports = {p.get("port") for rule in spec.get("egress", []) for p in rule.get("ports", [])}
            if 53 not in egress_ports:
                self.fail(f"{component}: no DNS egress")
            if component != "gateway" and self.v["database"]["port"] not in egress_ports:
                self.fail(f"{component}: no PostgreSQL egress")
            if component not in ("gateway", "users") and self.v["users"]["port"] not in egress_ports:
                self.fail(f"{component}: no egress to the users service, whose JWKS it verifies tokens with")
        self.ok("NetworkPolicies: one per component; services only from the gateway (and the scraper), the users "
                "service also from the other services; DNS and PostgreSQL egress, and the services' to users")

    def check_migration(self):
        jobs = self.by_kind.get("Job", {})
        if not self.v["migrations"]["enabled"]:
            if jobs:
                self.fail("migrations disabled but a Job rendered")
            return
        if len(jobs) != 1:
            self.fail(f"expected one migration Job, got {sorted(jobs)}")
            return
        (job,) = jobs.values()
        annotations = job["metadata"].get("annotations", {})
        hooks = set(annotations.get("helm.sh/hook", "").split(","))
        if hooks != {"pre-install", "pre-upgrade"}:
            self.fail(f"migration Job hooks {hooks}, expected pre-install and pre-upgrade")
        container = job["spec"]["template"]["spec"]["containers"][0]
        if container.get("args") != ["migrate"]:
            self.fail(f"migration Job runs {container.get('args')}")
        # A pre-install hook runs before the release's ordinary objects exist: whatever it reads must be a hook
        # too, with a lower weight.
        weight = int(annotations.get("helm.sh/hook-weight", "0"))
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            secret = self.by_kind.get("Secret", {}).get(ref["name"]) if ref else None
            if secret is not None:
                own = secret["metadata"].get("annotations", {})
                if "pre-install" not in own.get("helm.sh/hook", "") or int(own.get("helm.sh/hook-weight", "0")) >= weight:
                    self.fail(f"the migration Job reads Secret {ref['name']}, which is not a hook created before it")
        if job["spec"]["template"]["spec"].get("serviceAccountName") not in (None, "default"):
            self.fail("the migration Job names a ServiceAccount, which does not exist yet on first install")
        self.volumes = {v["name"]: v for v in job["spec"]["template"]["spec"].get("volumes", [])}
        environment = self.pod_environment(container)
        if environment is not None:
            env, files, helpers = environment
            check_environment(f"{self.label} migrate Job", env, config_files=files, helper_variables=helpers)
        self.ok("migration: `logicore migrate` as a pre-install/pre-upgrade hook Job, after the Secret it reads")

    def check_monitoring(self):
        monitors = self.by_kind.get("ServiceMonitor", {})
        rules = self.by_kind.get("PrometheusRule", {})
        if bool(monitors) != self.v["serviceMonitor"]["enabled"] or bool(rules) != self.v["prometheusRule"]["enabled"]:
            self.fail("ServiceMonitor/PrometheusRule rendered against their enabled values")
        for monitor in monitors.values():
            selector = monitor["spec"]["selector"]["matchLabels"]
            selected = [s for s in self.by_kind.get("Service", {}).values()
                        if all(s["metadata"]["labels"].get(k) == v for k, v in selector.items())]
            jobs = sorted(s["metadata"]["labels"].get(monitor["spec"]["jobLabel"], "?") for s in selected)
            if jobs != sorted(f"logicore-{c}" for c in COMPONENTS):
                self.fail(f"ServiceMonitor selects Services with jobs {jobs}; the rules expect logicore-<component> "
                          f"once each")
            elif not all(e.get("honorLabels") for e in monitor["spec"]["endpoints"]):
                self.fail("ServiceMonitor without honorLabels: LogiCore's `service` label would be renamed")
            else:
                self.ok(f"ServiceMonitor: one scrape per pod, jobs {', '.join(jobs)}, honorLabels")
        for rule in rules.values():
            expected = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
            if rule["spec"] != expected:
                self.fail("PrometheusRule spec differs from deploy/prometheus/rules.yml")
                continue
            path = self.out / f"{self.label}-prometheusrule.yml"
            path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
            result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
            if result.returncode != 0:
                self.fail(f"promtool rejects the rendered PrometheusRule: {result.stdout}{result.stderr}")
            else:
                self.ok("PrometheusRule: deploy/prometheus/rules.yml unchanged, `promtool check rules` passes")


if __name__ == "__main__":
    sys.exit(main())
