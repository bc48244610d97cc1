"""Run every benchmark once, one after the other (``make bench``). Each prints its own table of
figures measured side by side in one run; none of them asserts anything about time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import ENV

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"  # not committed: compare a run with the last one
RUNS = [
    ("api_bench.py", ["--posts", "100"]),
    ("ncnn_vs_torch.py", []),
    ("upscale_speed.py", []),
    ("upscale_quality.py", []),
    ("face_speed.py", ["--rounds", "1"]),
    ("colorize_bench.py", ["--repeats", "1"]),
    ("remove_bg_bench.py", []),
    ("remove_bg_full.py", []),
    ("restore_quality.py", []),
    ("enhance_scale1.py", []),
    ("sse_fanout.py", ["--subscribers", "5000"]),
    ("big_photo_memory.py", ["--megapixels", "24", "100"]),
    ("scale_bench.py", []),
]


def main() -> int:
    failed = []
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as figures:
        env = {**os.environ, ENV: figures.name}
        for script, args in RUNS:
            sys.stdout.write(f"\n=== {script} {' '.join(args)}\n")
            sys.stdout.flush()
            started = time.perf_counter()
            code = subprocess.call([sys.executable, str(HERE / script), *args], env=env)
            sys.stdout.write(f"--- {script}: exit {code}, {time.perf_counter() - started:.0f} s\n")
            if code:
                failed.append(script)
        entries = [json.loads(line) for line in figures.read().splitlines() if line.strip()]
    write_results(entries)
    if failed:
        sys.stdout.write(f"\nfailed: {', '.join(failed)}\n")
    return 1 if failed else 0


def write_results(entries: list[dict]) -> None:
    """bench/results.json, after printing each figure next to the last run's."""
    last = {e["name"]: e for e in json.loads(RESULTS.read_text())} if RESULTS.exists() else {}
    sys.stdout.write(f"\n=== {len(entries)} figures -> {RESULTS}\n")
    for entry in entries:
        before = last.get(entry["name"])
        was = f"  (last run {before['value']:g})" if before else ""
        against = f" vs {entry['baseline']}" if entry["baseline"] else ""
        sys.stdout.write(f"  {entry['name']:52s} {entry['value']:10g} {entry['unit']}{against}{was}\n")
    RESULTS.write_text(json.dumps(entries, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
