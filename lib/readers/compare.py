"""Config diff: which fields differ between runs (the Compare tab and ``lib.runs``)."""
from __future__ import annotations

import json


# ---------------------------------------------------------------------------------------------------
# Comparing runs
# ---------------------------------------------------------------------------------------------------
def compare_configs(configs: dict[str, dict]) -> tuple[list[dict], set[str]]:
    """One row per config field ({"field", <run id>: value...}) and the set of fields that differ."""
    fields: list[str] = []
    for cfg in configs.values():
        for k in cfg:
            if k not in fields:
                fields.append(k)
    rows, differing = [], set()
    for f in fields:
        values = [json.dumps(cfg.get(f), sort_keys=True, default=str) for cfg in configs.values()]
        row = {"field": f}
        for run_id, cfg in configs.items():
            v = cfg.get(f, "")
            row[run_id] = v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v)
        if len(set(values)) > 1:
            differing.add(f)
        rows.append(row)
    return rows, differing
