"""Run every benchmark once, one after the other (``make bench``). Each prints its own table of
figures measured side by side in one run; none of them asserts anything about time."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [
    ("api_bench.py", ["--posts", "100"]),
    ("ncnn_vs_torch.py", []),
    ("upscale_speed.py", []),
    ("upscale_quality.py", []),
    ("face_speed.py", ["--rounds", "1"]),
    ("colorize_bench.py", ["--repeats", "1"]),
    ("remove_bg_bench.py", []),
    ("restore_quality.py", []),
]


def main() -> int:
    failed = []
    for script, args in RUNS:
        sys.stdout.write(f"\n=== {script} {' '.join(args)}\n")
        sys.stdout.flush()
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / script), *args])
        sys.stdout.write(f"--- {script}: exit {code}, {time.perf_counter() - started:.0f} s\n")
        if code:
            failed.append(script)
    if failed:
        sys.stdout.write(f"\nfailed: {', '.join(failed)}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
