"""Markdown tables and JSON files for benchmark and speed results.

Plain functions over plain dicts, so the same tables can be regenerated from a saved JSON file.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

METRIC_COLUMNS: list[tuple[str, str]] = [("ao", "AO"), ("sr50", "SR0.5"), ("sr75", "SR0.75"),
                                         ("auc", "AUC"), ("precision", "Prec@20px"), ("fps", "fps"),
                                         ("score_auc", "score ROC AUC")]


def fmt(value: Any, digits: int = 3) -> str:
    """Table cell: ``-`` for missing values, fixed decimals for floats."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(c) for c in header]] + [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i else (":" + "-" * (w + 1))
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def metrics_table(trackers: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per tracker: AO, SR0.5, SR0.75, AUC, precision, fps."""
    rows = []
    for name, m in trackers.items():
        rows.append([name] + [fmt(m.get(k), 1 if k == "fps" else 3) for k, _ in METRIC_COLUMNS])
    return markdown_table(["tracker"] + [h for _, h in METRIC_COLUMNS], rows)


def sequence_table(sequences: Mapping[str, Mapping[str, Mapping[str, Any]]], trackers: Sequence[str],
                   key: str = "ao") -> str:
    """One row per sequence, one column per tracker, showing metric ``key``."""
    rows = [[seq] + [fmt(per.get(t, {}).get(key)) for t in trackers] for seq, per in sequences.items()]
    return markdown_table(["sequence"] + list(trackers), rows)


def benchmark_markdown(result: Mapping[str, Any]) -> str:
    """The whole report: summary table, per-sequence AO, skipped baselines, archives."""
    title = f"# Benchmark: {result.get('dataset', '?')}"
    parts = [title, "", f"root: `{result.get('root', '')}`, protocol: {result.get('protocol', '')}", ""]
    trackers = result.get("trackers", {})
    if trackers:
        parts += [metrics_table(trackers), ""]
    archives = {n: m["archive"] for n, m in trackers.items() if m.get("archive")}
    for name, path in archives.items():
        parts.append(f"- submission archive for {name}: `{path}`")
    if archives:
        parts.append("")
    seqs = result.get("sequences", {})
    if seqs and trackers:
        parts += ["## Per sequence (AO)", "", sequence_table(seqs, list(trackers)), ""]
    skipped = result.get("skipped", {})
    if skipped:
        parts += ["## Skipped", ""] + [f"- {name}: {why}" for name, why in skipped.items()] + [""]
    return "\n".join(parts)


def speed_markdown(models: Mapping[str, Mapping[str, Any]]) -> str:
    """Speed table: ms (median, p90), fps, MACs, parameters, bytes, threads; ``-`` where a count is
    unknown (OpenCV baselines: no MACs or parameters, a size only when they load ONNX files)."""
    from ..models.profile import format_macs

    def macs(v: Any) -> str:
        return "-" if v is None else format_macs(v)

    accuracy = any("ao" in m for m in models.values())
    rows = []
    for name, m in models.items():
        params, size = m.get("params"), m.get("bytes")
        rows.append([name, m.get("engine", "torch fp32"), str(m["threads"]), fmt(m["ms"], 2), fmt(m["p90_ms"], 2), fmt(m["fps"], 1),
                     macs(m.get("macs")), macs(m.get("exemplar_macs", 0)),
                     "-" if params is None else f"{params / 1e6:.3f} M",
                     "-" if size is None else f"{size / 2**20:.2f} MiB"]
                    + ([fmt(m.get("ao")), fmt(m.get("sr50"))] if accuracy else []))
    return markdown_table(["model", "engine", "threads", "ms (median)", "ms (p90)", "fps", "MACs/frame",
                           "exemplar MACs", "params", "size"] + (["AO", "SR0.5"] if accuracy else []), rows)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON (atomic rename, so a crash leaves the old file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
