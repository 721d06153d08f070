"""docker-compose.yml beyond its schema: every LogiCore container's environment accepted (and read) by
`logicore config check`, health checks in exec form on the port the container really listens on, the
one-shot migration first, scalable services without fixed host ports or names, the gateway's upstreams and
Prometheus's targets pointing at real services and ports, Grafana's mounts matching its provisioning.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from common import ROOT, SAMPLE_JWT_SECRET, check_environment, fail, finish, image_env, listening_ports, ok

# What the check supplies for variables the file leaves to the operator (`${VAR:?…}`); anything else required
# and missing is a failure, so a new required variable must be added here knowingly.
OPERATOR_ENV = {"GATEWAY_JWT_SECRET": SAMPLE_JWT_SECRET}
SCALABLE = ("users", "inventory", "orders")
INTERPOLATION = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, where: str):
    """Compose's variable substitution (${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err},
    $VAR, $$) with OPERATOR_ENV as the environment."""
    if isinstance(value, dict):
        return {k: interpolate(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3)
        present = name in OPERATOR_ENV
        current = OPERATOR_ENV.get(name, "")
        if operator in (":-", "-"):
            use_default = (not current) if operator == ":-" else (not present)
            return argument if use_default else current
        if operator in (":?", "?"):
            if (operator == ":?" and not current) or (operator == "?" and not present):
                fail(f"{where}: requires ${{{name}}} ({argument.strip()}), which the check does not supply")
            return current
        return current

    return INTERPOLATION.sub(substitute, value)


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def main() -> int:
    path = ROOT / "docker-compose.yml"
    raw = yaml.safe_load(path.read_text())
    compose = interpolate(raw, "docker-compose.yml")
    services: dict[str, dict] = compose["services"]
    image = raw["x-logicore"]["image"]
    logicore = {name: s for name, s in services.items() if raw["services"][name].get("image") == image}
    print(f"LogiCore containers: {', '.join(logicore)}")
    expected = {"migrate", "gateway", *SCALABLE}
    if set(logicore) != expected:
        fail(f"LogiCore containers are {sorted(logicore)}, expected {sorted(expected)}")

    base_env = image_env()
    ports: dict[str, dict[str, int]] = {}
    for name, service in logicore.items():
        command = service.get("command") or []
        if not command:
            fail(f"{name}: no command (the image's default is `all`, one process for everything)")
            continue
        env = {**base_env, **environment_of(service)}
        config = check_environment(f"compose {name} (`logicore {' '.join(command)}`)", env)
        if config is None:
            continue
        if command[0] != "migrate":
            ports[name] = listening_ports(config, command[0])
        if name == "gateway":
            check_gateway_upstreams(env, services)

    for name, service in logicore.items():
        check_healthcheck(name, service, ports.get(name))
        if name in SCALABLE:
            fixed = [key for key in ("container_name", "ports") if key in service]
            if fixed:
                fail(f"{name}: {', '.join(fixed)} would stop `--scale {name}=N` (fixed names/host ports clash)")
            else:
                ok(f"{name}: no container_name or host ports, so `--scale` works")
        if name != "migrate":
            condition = (service.get("depends_on") or {}).get("migrate", {}).get("condition")
            if name != "gateway" and condition != "service_completed_successfully":
                fail(f"{name}: must start after migrate completed successfully (got {condition!r})")

    check_depends_on(services, logicore)
    check_prometheus(services, ports)
    check_grafana(services)
    return finish("docker-compose.yml")


def check_gateway_upstreams(env: dict[str, str], services: dict) -> None:
    backend = env.get("DISCOVERY_BACKEND", "consul" if env.get("CONSUL_HOST") else "static")
    if backend == "consul" and "SERVICE_ADVERTISE_ADDRESS" not in env:
        fail("gateway: Consul discovery without a per-instance SERVICE_ADVERTISE_ADDRESS")
    for variable, target in (("USER_SERVICE_URL", "users"), ("INVENTORY_SERVICE_URL", "inventory"),
                             ("ORDER_SERVICE_URL", "orders")):
        url = urlsplit(env.get(variable, ""))
        if url.hostname != target or target not in services:
            fail(f"gateway: {variable}={env.get(variable)!r} does not name the compose service {target!r}")
            continue
        served = logicore_port(services[target], target)
        if served is not None and url.port != served:
            fail(f"gateway: {variable} port {url.port}, but {target} listens on {served}")
        else:
            ok(f"gateway: {variable} -> service {target}:{url.port} ({backend} discovery)")


def logicore_port(service: dict, name: str) -> int | None:
    env = {**image_env(), **environment_of(service)}
    override = env.get("PORT")
    defaults = {"users": 4001, "inventory": 8000, "orders": 4003}
    generic = env.get(f"LOGICORE_{name.upper()}__PORT")
    return int(override or generic or defaults[name])


def check_healthcheck(name: str, service: dict, ports: dict[str, int] | None) -> None:
    check = service.get("healthcheck") or {}
    if name == "migrate":
        if not check.get("disable"):
            fail("migrate: a one-shot must disable the image's HEALTHCHECK (it never listens)")
        return
    test = check.get("test")
    if not (isinstance(test, list) and test[:3] == ["CMD", "/usr/local/bin/logicore", "probe"] and len(test) == 4):
        fail(f"{name}: healthcheck must be exec form [CMD, /usr/local/bin/logicore, probe, URL] (no shell in "
             f"the image), got {test!r}")
        return
    url = urlsplit(test[3])
    if url.hostname != "127.0.0.1" or url.path not in ("/health", "/readyz"):
        fail(f"{name}: health check URL {test[3]} is not the container's own /health or /readyz")
    elif ports and url.port != ports["http"]:
        fail(f"{name}: health check probes port {url.port} but the container listens on {ports['http']}")
    else:
        ok(f"{name}: health check `logicore probe {test[3]}` (exec form, its own port)")


def check_depends_on(services: dict, logicore: dict) -> None:
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            condition = spec.get("condition") if isinstance(spec, dict) else "service_started"
            if target not in services:
                fail(f"{name}: depends on unknown service {target}")
            elif condition == "service_healthy":
                has_check = ("healthcheck" in services[target] and not services[target]["healthcheck"].get("disable")) \
                    or target in logicore
                if not has_check:
                    fail(f"{name}: waits for {target} to be healthy, but {target} has no health check")
            elif condition == "service_completed_successfully" and services[target].get("restart") not in ("no", None):
                fail(f"{name}: waits for {target} to complete, but {target} restarts ({services[target]['restart']})")
    ok("depends_on: every condition names a service that can meet it")


def check_prometheus(services: dict, ports: dict[str, dict[str, int]]) -> None:
    prometheus = services.get("prometheus")
    if not prometheus:
        fail("no prometheus service")
        return
    mounts = [v for v in prometheus.get("volumes", []) if isinstance(v, str)]
    if "./deploy/prometheus:/etc/prometheus:ro" not in mounts:
        fail("prometheus: deploy/prometheus is not mounted at /etc/prometheus")
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, listening in ports.items():
        job = jobs.get(f"logicore-{name}")
        if not job:
            fail(f"prometheus.yml: no job logicore-{name}")
            continue
        sd = (job.get("dns_sd_configs") or [{}])[0]
        want = listening["admin"] if name == "gateway" else listening["http"]
        if sd.get("names") != [name] or sd.get("port") != want or sd.get("type") != "A":
            fail(f"prometheus.yml: job logicore-{name} must resolve {name!r} (A records, every replica) on port "
                 f"{want}, got {sd}")
        else:
            ok(f"prometheus.yml: logicore-{name} scrapes every replica of {name} on :{want}/metrics")


def check_grafana(services: dict) -> None:
    grafana = services.get("grafana", {})
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana.get("volumes", []) if v.startswith("./"))
    provisioning = mounts.get("./deploy/grafana/provisioning")
    dashboards = mounts.get("./deploy/grafana/dashboards")
    if provisioning != "/etc/grafana/provisioning" or not dashboards:
        fail(f"grafana: provisioning and dashboards must be mounted from deploy/grafana (got {mounts})")
        return
    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yml").read_text())
    paths = [p["options"]["path"] for p in providers["providers"]]
    if paths != [dashboards]:
        fail(f"grafana: the dashboard provider reads {paths}, the dashboards are mounted at {dashboards}")
    else:
        ok(f"grafana: dashboards mounted where the provider reads them ({dashboards})")


if __name__ == "__main__":
    sys.exit(main())
