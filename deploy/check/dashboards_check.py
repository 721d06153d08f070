"""Grafana dashboards and provisioning: the committed JSON is what deploy/grafana/generate.py makes; every
dashboard has what Grafana needs (a unique uid and title, panels with ids, types, positions, a datasource and
targets with a refId and an expression); every variable an expression uses is declared; every expression
names only metrics LogiCore serves or rules.yml records; and every expression parses as PromQL, checked by
promtool on a rule file made of them (promtool has no command that parses a bare expression).

Usage: dashboards_check.py WORK_DIR
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from common import ROOT, fail, failures, finish, known_metrics, metric_names, ok, selectable_names

DASHBOARDS = ROOT / "deploy/grafana/dashboards"
PROVISIONING = ROOT / "deploy/grafana/provisioning"
# Grafana's built-in variables and a value of the right kind for each, for the parse check.
BUILT_INS = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h", "__range_s": "3600",
             "__interval_ms": "30000"}


def main() -> int:
    work = Path(sys.argv[1])
    work.mkdir(parents=True, exist_ok=True)
    generated = subprocess.run([sys.executable, str(ROOT / "deploy/grafana/generate.py"), "--check"],
                               capture_output=True, text=True)
    if generated.returncode != 0:
        fail(generated.stderr.strip() or generated.stdout.strip())
    else:
        ok("dashboards are exactly what deploy/grafana/generate.py makes")

    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    known = selectable_names(known_metrics()) | recorded
    expressions: list[tuple[str, str]] = []
    uids, titles = {}, {}
    files = sorted(DASHBOARDS.glob("*.json"))
    if not files:
        fail(f"no dashboards in {DASHBOARDS}")
    for path in files:
        try:
            board = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            fail(f"{path.name}: not JSON: {error}")
            continue
        expressions += check_dashboard(path.name, board, uids, titles, known)

    rule_file = work / "dashboard-expressions.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-expressions", "rules": [
        {"record": f"dashboard_check:expr_{i}", "expr": expr} for i, (_, expr) in enumerate(expressions)]}]},
        sort_keys=False))
    result = subprocess.run(["promtool", "check", "rules", str(rule_file)], capture_output=True, text=True)
    if result.returncode != 0:
        reported = False
        for line in (result.stdout + result.stderr).splitlines():
            match = re.search(r"rule (\d+)", line)
            if match:
                fail(f"{expressions[int(match.group(1)) - 1][0]}: {line.strip()}")
                reported = True
        if not reported:
            fail(f"promtool check rules {rule_file}: {(result.stdout + result.stderr).strip()}")
    else:
        ok(f"all {len(expressions)} dashboard expressions parse (promtool check rules on {rule_file.name})")

    check_provisioning()
    return finish("Grafana dashboards")


def check_dashboard(name: str, board: dict, uids: dict, titles: dict, known: set[str]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    before = len(failures)
    for field, kind in (("uid", str), ("title", str), ("schemaVersion", int), ("panels", list),
                        ("templating", dict)):
        if not isinstance(board.get(field), kind) or not board.get(field):
            fail(f"{name}: missing or empty `{field}`")
            return found
    if len(board["uid"]) > 40 or not re.fullmatch(r"[A-Za-z0-9_-]+", board["uid"]):
        fail(f"{name}: uid {board['uid']!r} is not a Grafana uid (<= 40 of A-Za-z0-9_-)")
    for seen, key in ((uids, "uid"), (titles, "title")):
        if board[key] in seen:
            fail(f"{name}: {key} {board[key]!r} also used by {seen[board[key]]}")
        seen[board[key]] = name
    variables = {v["name"] for v in board["templating"].get("list", [])}
    ids = set()
    panels = [p for p in board["panels"] if p.get("type") != "row"]
    for panel in board["panels"]:
        where = f"{name} panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("id") in ids:
            fail(f"{where}: duplicate panel id")
        ids.add(panel.get("id"))
        pos = panel.get("gridPos", {})
        if not all(isinstance(pos.get(k), int) for k in "xywh") or pos["x"] + pos["w"] > 24:
            fail(f"{where}: gridPos {pos} is not inside the 24-column grid")
        if panel.get("type") == "row":
            continue
        if not panel.get("type") or not panel.get("title") or not panel.get("datasource"):
            fail(f"{where}: needs a type, a title and a datasource")
        targets = panel.get("targets") or []
        if not targets:
            fail(f"{where}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            fail(f"{where}: refIds {refs} must be present and unique")
        for target in targets:
            expr = target.get("expr", "")
            if not expr.strip():
                fail(f"{where}: target {target.get('refId')} has no expr")
                continue
            used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expr))
            undeclared = used - variables - set(BUILT_INS)
            if undeclared:
                fail(f"{where}: uses undeclared variable(s) {sorted(undeclared)}")
                continue
            concrete = expr
            for var in sorted(used, key=len, reverse=True):
                value = BUILT_INS.get(var, ".+")
                concrete = concrete.replace("${" + var + "}", value).replace("$" + var, value)
            unknown = metric_names(concrete) - known
            if unknown:
                fail(f"{where}: {sorted(unknown)} are not LogiCore metrics (deploy/check/metrics.tsv) or recorded rules")
            found.append((where, concrete))
    if len(failures) == before:
        ok(f"{name}: uid {board['uid']}, {len(panels)} panels, {sum(len(p.get('targets', [])) for p in panels)} "
           f"queries, every metric known")
    return found


def check_provisioning() -> None:
    before = len(failures)
    sources = yaml.safe_load((PROVISIONING / "datasources/datasources.yml").read_text())
    by_uid = {d["uid"]: d for d in sources["datasources"]}
    prometheus = [d for d in sources["datasources"] if d["type"] == "prometheus"]
    if len(prometheus) != 1 or not prometheus[0].get("isDefault"):
        fail("provisioning: exactly one Prometheus datasource, the default, is needed by the dashboards' "
             "`datasource` variable")
    for link in prometheus[0].get("jsonData", {}).get("exemplarTraceIdDestinations", []) if prometheus else []:
        if link["datasourceUid"] not in by_uid:
            fail(f"provisioning: exemplar link to unknown datasource {link['datasourceUid']}")
    providers = yaml.safe_load((PROVISIONING / "dashboards/dashboards.yml").read_text())
    if not providers.get("providers"):
        fail("provisioning: no dashboard provider")
    if len(failures) == before:
        ok(f"provisioning: datasources {sorted(by_uid)}, {len(providers['providers'])} dashboard provider(s)")


if __name__ == "__main__":
    sys.exit(main())
