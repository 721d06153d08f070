"""Shared by the deployment checks (deploy/check.sh runs them): running `logicore config check/show` with
exactly a container's environment, reading the ports it would listen on, and finding metric names in PromQL.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A JWT secret that production accepts (>= 32 bytes, not the development default), for variables that the
# deployment files leave to the operator (compose's ${GATEWAY_JWT_SECRET:?…}, a Secret's key).
SAMPLE_JWT_SECRET = "check-only-0123456789abcdef0123456789abcdef"

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)
    print(f"  FAIL {message}", flush=True)


def ok(message: str) -> None:
    print(f"  ok   {message}", flush=True)


def finish(what: str) -> int:
    if failures:
        print(f"{what}: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print(f"{what}: all passed")
    return 0


def logicore_binary() -> str:
    binary = os.environ.get("LOGICORE_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "logicore")
    binary = os.path.abspath(binary)  # the checks run it from temporary working directories
    if not os.access(binary, os.X_OK):
        print(f"no logicore binary at {binary}: build it first (cargo build -p logicore) or set LOGICORE_BIN",
              file=sys.stderr)
        sys.exit(2)
    return binary


def image_env() -> dict[str, str]:
    """The ENV instructions of the Dockerfile's last stage: part of every container's environment."""
    env: dict[str, str] = {}
    stage: dict[str, str] = {}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.strip().split(None, 1)
        if not words:
            continue
        if words[0].upper() == "FROM":
            stage = {}
        elif words[0].upper() == "ENV" and len(words) == 2:
            for pair in words[1].split():
                if "=" not in pair:
                    raise SystemExit(f"Dockerfile: ENV {words[1]!r}: only KEY=VALUE pairs are understood here")
                key, value = pair.split("=", 1)
                stage[key] = value.strip('"')
    env.update(stage)
    return env


class Config:
    """The outcome of `logicore config show` for one environment: each key's value and where it came from."""

    def __init__(self, text: str):
        self.values: dict[str, str] = {}
        self.sources: dict[str, str] = {}
        for line in text.splitlines():
            match = re.match(r"^([a-z0-9_.]+) = (.*?)  # (.*)$", line)
            if match:
                key, value, source = match.groups()
                self.values[key] = value.strip('"')
                self.sources[key] = source

    def consumed_variables(self) -> set[str]:
        return {source[4:] for source in self.sources.values() if source.startswith("env ")}


def check_environment(label: str, env: dict[str, str], *, config_files: dict[str, str] | None = None,
                      helper_variables: set[str] = frozenset()) -> Config | None:
    """Runs `logicore config check` and `config show` with exactly `env` (env -i), in an empty working
    directory so that no config/<env>.toml of this machine is picked up. `config_files` are written to a
    temporary directory and every `{dir}` in the environment's values is replaced by it (to point
    LOGICORE_CONFIG at a rendered ConfigMap). Every variable must be read by LogiCore (a misspelt name is
    otherwise ignored silently), except `helper_variables` (used only to build other values)."""
    binary = logicore_binary()
    with tempfile.TemporaryDirectory() as work:
        for name, text in (config_files or {}).items():
            Path(work, name).write_text(text)
        resolved = {key: value.replace("{dir}", work) for key, value in env.items()}
        run = ["env", "-i", *(f"{k}={v}" for k, v in sorted(resolved.items())), binary, "config"]
        check = subprocess.run([*run, "check"], cwd=work, capture_output=True, text=True)
        if check.returncode != 0:
            fail(f"{label}: `logicore config check` exit {check.returncode}: "
                 f"{(check.stdout + check.stderr).strip()}")
            return None
        show = subprocess.run([*run, "show"], cwd=work, capture_output=True, text=True)
        if show.returncode != 0:
            fail(f"{label}: `logicore config show` exit {show.returncode}: {show.stderr.strip()}")
            return None
    config = Config(show.stdout)
    unread = sorted(set(env) - config.consumed_variables() - set(helper_variables) - {"LOGICORE_CONFIG"})
    if unread:
        fail(f"{label}: variables LogiCore does not read (misspelt, or two names for one key): {', '.join(unread)}")
        return None
    ok(f"{label}: `logicore config check` accepts its {len(env)} variables, and LogiCore reads every one")
    return config


def listening_ports(config: Config, command: str) -> dict[str, int]:
    """The ports `logicore <command>` listens on with this configuration."""
    override = config.values.get("service.port")
    if command == "gateway":
        return {"http": int(override or config.values["gateway.port"]),
                "admin": int(config.values["gateway.admin_port"])}
    return {"http": int(override or config.values[f"{command}.port"])}


# --- PromQL ---------------------------------------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
             "unless", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """Metric (and recorded) names an expression selects. Drops strings, label matchers, durations and the
    label lists of by/without/on/ignoring/group_*; what remains and is not a function call is a name."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        word, call = match.groups()
        if call or word.lower() in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def known_metrics() -> dict[str, tuple[str, str, str]]:
    """deploy/check/metrics.tsv: family -> (type, source file, the literal the code registers it by)."""
    families = {}
    for line in (ROOT / "deploy/check/metrics.tsv").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        family, kind, source, literal = line.split("\t")
        families[family] = (kind, source, literal)
    return families


def selectable_names(families: dict[str, tuple[str, str, str]]) -> set[str]:
    names = set()
    for family, (kind, _, _) in families.items():
        names.add(family)
        if kind == "histogram":
            names |= {f"{family}_bucket", f"{family}_count", f"{family}_sum"}
    return names
