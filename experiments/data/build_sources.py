#!/usr/bin/env python
"""Build the v3 training sequences (experiments/data/sources.yaml) from local git snapshots.

    python experiments/data/build_sources.py --mirror /path/to/snapshots --out ../data/sources-v3

writes ``<out>/train/list.txt`` and one GOT-10k-layout folder per sequence, checking commits, blobs,
frame counts and the recorded source SHA-256 of each (siamtrack.data.build). A second run re-uses
every sequence whose files still match its manifest. ``--only NAME`` builds some, ``--skip-missing``
carries on past a sequence whose snapshot, commit or blob is absent (it is left out of list.txt),
``--thermal`` adds the two thermal-IR clips, ``--record`` writes the source hashes of a first build
into the table. Exit code 2 on a build error (one line naming the sequence).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from siamtrack.data.build import (BuildError, BuildOptions, BuildResult, build_sequence, load_table,
                                  write_list)

TABLE = Path(__file__).with_name("sources.yaml")
REPO_ROOT = Path(__file__).resolve().parents[2]


def record_hashes(table: Path, results: list[BuildResult]) -> int:
    """Write the source hash of each built row that has none yet into the table; how many.

    One-line (flow-style) rows, as the shipped table has, get ``sha256: ...`` after ``frames: N`` so
    the comments stay; a table in another layout is written anew (its header comment kept)."""
    text = table.read_text(encoding="utf-8")
    new_hashes = {r.name: r.source_sha256 for r in results}
    known = {e.name for e in load_table(table) if e.sha256}
    todo = {n: h for n, h in new_hashes.items() if n not in known}
    pending = dict(todo)
    for name, digest in todo.items():
        row = re.search(r"^- \{name: " + re.escape(name) + r",.*?(?=^- \{|\Z)", text, re.S | re.M)
        if row is None:
            continue
        new = re.sub(r"frames: (\d+),", rf"frames: \1, sha256: {digest},", row.group(0), count=1)
        text = text[:row.start()] + new + text[row.end():]
        pending.pop(name)
    if pending:
        import yaml

        header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
        doc = yaml.safe_load(text)
        rows = doc["sequences"] if isinstance(doc, dict) else doc
        for row in rows:
            if row["name"] in pending:
                row["sha256"] = pending[row["name"]]
        text = header + yaml.safe_dump(doc, sort_keys=False)
    tmp = table.with_name(f".{table.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(table)
    return len(todo)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mirror", required=True, help="folder of git snapshots (owner+name/repo, owner/name, ...)")
    p.add_argument("--out", required=True, help="output root (outside the repository); sequences go to OUT/train")
    p.add_argument("--table", default=str(TABLE), help="source table (default: %(default)s)")
    p.add_argument("--only", action="append", default=[], metavar="NAME", help="build only these sequences")
    p.add_argument("--skip-missing", action="store_true", help="leave out sequences that cannot be built")
    p.add_argument("--thermal", action="store_true", help="also build the thermal-IR sequences")
    p.add_argument("--max-side", type=int, default=640, help="longer frame side in pixels (default 640)")
    p.add_argument("--quality", type=int, default=70, help="JPEG quality (default 70, as ../shared/data)")
    p.add_argument("--workers", type=int, default=2, help="sequences built in parallel (default 2)")
    p.add_argument("--record", action="store_true", help="write the source hashes of new rows into the table")
    args = p.parse_args(argv)

    out = Path(args.out).resolve()
    if out == REPO_ROOT or REPO_ROOT in out.parents:
        print(f"build_sources: error: --out {out} is inside the repository; built data stays outside it",
              file=sys.stderr)
        return 2
    try:
        entries = load_table(args.table)
    except (OSError, ValueError) as exc:
        print(f"build_sources: error: {exc}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.only) - {e.name for e in entries})
    if unknown:
        print(f"build_sources: error: --only names not in the table: {unknown}", file=sys.stderr)
        return 2
    chosen = [e for e in entries if (e.name in args.only if args.only else (args.thermal or not e.thermal))]
    train = out / "train"
    train.mkdir(parents=True, exist_ok=True)
    options = BuildOptions(max_side=args.max_side, quality=args.quality)

    start = time.perf_counter()
    results: dict[str, BuildResult] = {}
    failed: list[str] = []
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        futures = {e.name: pool.submit(build_sequence, e, args.mirror, train, options) for e in chosen}
        for name, fut in tqdm(futures.items(), total=len(futures), desc="sequences", unit="seq"):
            try:
                results[name] = fut.result()
            except BuildError as exc:
                if not args.skip_missing:
                    for f in futures.values():
                        f.cancel()
                    print(f"build_sources: error: {exc}", file=sys.stderr)
                    return 2
                failed.append(str(exc))
                tqdm.write(f"build_sources: skipped: {exc}", file=sys.stderr)

    # list.txt names every built sequence of the table (earlier --only runs included), table order
    built = [e.name for e in entries if e.name in results or (train / e.name / ".build.json").is_file()]
    write_list(train, built)
    print(f"{'sequence':<22} {'status':<9} {'frames':>6} {'absent':>6} {'size':>9} {'s':>6}  source sha256")
    for e in chosen:
        r = results.get(e.name)
        if r is not None:
            size = f"{r.resolution[0]}x{r.resolution[1]}"
            print(f"{r.name:<22} {r.status:<9} {r.frames:>6} {r.absent:>6} {size:>9} {r.seconds:>6.1f}  {r.source_sha256}")
    frames = sum(r.frames for r in results.values())
    print(f"{len(results)} sequences, {frames} frames ({sum(r.status == 'built' for r in results.values())} built, "
          f"{sum(r.status == 'verified' for r in results.values())} re-used) in {time.perf_counter() - start:.0f} s; "
          f"list.txt has {len(built)}: {train}")
    if failed:
        print(f"{len(failed)} skipped:", *failed, sep="\n  ")
    if args.record:
        print(f"recorded {record_hashes(Path(args.table), list(results.values()))} new hashes in {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
