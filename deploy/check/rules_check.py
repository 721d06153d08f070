"""Prometheus rules beyond promtool: every alert of rules.yml is unit-tested both firing and silent in
rules_test.yml (and no test names an alert that does not exist); every expression uses only metrics LogiCore
serves (deploy/check/metrics.tsv) or rules.yml records; each catalogued metric is still registered by the code
under that name; every alert's runbook link has its entry in docs/deployment.md; the chart's copy of the
rules is identical to deploy/prometheus/rules.yml.
"""

from __future__ import annotations

import re
import sys

import yaml

from common import ROOT, fail, failures, finish, known_metrics, metric_names, ok, selectable_names

RULES = ROOT / "deploy/prometheus/rules.yml"
TESTS = ROOT / "deploy/prometheus/rules_test.yml"
CHART_COPY = ROOT / "deploy/helm/logicore/files/prometheus-rules.yml"
DOC = ROOT / "docs/deployment.md"


def main() -> int:
    rules = yaml.safe_load(RULES.read_text())
    all_rules = [r for g in rules["groups"] for r in g["rules"]]
    alerts = {r["alert"]: r for r in all_rules if "alert" in r}
    recorded = {r["record"] for r in all_rules if "record" in r}

    tests = yaml.safe_load(TESTS.read_text())
    firing, silent = set(), set()
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    for alert in sorted(alerts):
        missing = [what for what, seen in (("firing", firing), ("silent", silent)) if alert not in seen]
        if missing:
            fail(f"{alert}: no {' and no '.join(missing)} case in rules_test.yml")
    unknown = (firing | silent) - set(alerts)
    if unknown:
        fail(f"rules_test.yml tests alerts rules.yml does not have: {sorted(unknown)}")
    if not unknown and firing >= set(alerts) and silent >= set(alerts):
        ok(f"all {len(alerts)} alerts have a firing and a silent unit test")

    families = known_metrics()
    known = selectable_names(families) | recorded
    before = len(failures)
    for rule in all_rules:
        used = metric_names(rule["expr"])
        strangers = used - known
        if strangers:
            fail(f"{rule.get('alert') or rule.get('record')}: {sorted(strangers)} are neither LogiCore metrics "
                 f"(deploy/check/metrics.tsv) nor recorded by rules.yml")
    if len(failures) == before:
        ok(f"{len(all_rules)} rules use only catalogued metrics and recorded series")

    before = len(failures)
    for family, (_, source, literal) in families.items():
        if source == "-":
            continue
        text = (ROOT / source).read_text() if (ROOT / source).exists() else ""
        if f'"{literal}"' not in text:
            fail(f"{family}: {source} no longer registers \"{literal}\" (metric renamed or moved? update "
                 f"deploy/check/metrics.tsv, the rules and the dashboards)")
    if len(failures) == before:
        ok(f"{len(families)} catalogued metric families are still registered by the code under those names")

    anchors = {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", DOC.read_text(), flags=re.M)} if DOC.exists() else set()
    before = len(failures)
    for alert, rule in sorted(alerts.items()):
        runbook = rule.get("annotations", {}).get("runbook", "")
        anchor = runbook.partition("#")[2]
        if not runbook.startswith("docs/deployment.md#") or anchor not in anchors:
            fail(f"{alert}: runbook {runbook!r} has no heading in docs/deployment.md")
    if len(failures) == before:
        ok("every alert's runbook link has its entry in docs/deployment.md")

    if CHART_COPY.read_text() != RULES.read_text():
        fail(f"{CHART_COPY.relative_to(ROOT)} differs from {RULES.relative_to(ROOT)}: "
             f"cp {RULES.relative_to(ROOT)} {CHART_COPY.relative_to(ROOT)}")
    else:
        ok("the chart's PrometheusRule carries the same rules file")
    return finish("Prometheus rules")


if __name__ == "__main__":
    sys.exit(main())
