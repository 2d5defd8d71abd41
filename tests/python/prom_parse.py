"""Parses a Prometheus scrape (OpenMetrics text, as Berth's /metrics answers) from stdin with
prometheus_client's strict OpenMetrics parser, and prints its families as JSON:
{name: {"type": ..., "samples": [{"name", "labels", "value"}]}}. Any format error fails."""

import json
import math
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> None:
    families = {}
    for family in text_string_to_metric_families(sys.stdin.read()):
        if family.name in families:
            raise ValueError(f"family {family.name} twice")
        families[family.name] = {
            "type": family.type,
            "samples": [
                {
                    "name": s.name,
                    "labels": s.labels,
                    "value": s.value if math.isfinite(s.value) else str(s.value),
                }
                for s in family.samples
            ],
        }
    json.dump(families, sys.stdout)


if __name__ == "__main__":
    main()
