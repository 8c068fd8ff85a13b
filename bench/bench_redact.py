"""How long log redaction takes per line, on the lines that once made it quadratic.

Every line a build prints is redacted (`hooksvc.redact.redact`) against every configured secret
before it reaches the deployment log. A regular expression for URL credentials used to take time
quadratic in a run of letters; a build printing such lines made the worker fall behind. Times
single lines (a 500-character run of letters, of digits, a 4,000-character run, an ordinary build
line) and a 5 MB log (26,000 lines, one in ten a run of 200-2,000 letters), against five secrets.
Target: a 500-character run under 0.1 ms, the 5 MB log under 2 s.

    .venv/bin/python bench/bench_redact.py [--rounds 5]

Prints a table of medians and min–max over the rounds; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import sys
import time

from hooksvc.redact import redact

SECRETS = ["shop-webhook-secret", "ghp_hostToken0000000000000000000000", "op-token-1", "op-token-2", "notify-key-abc"]
LINES = {
    "500 letters": "a" * 500,
    "500 digits": "1" * 500,
    "4,000 letters": "a" * 4000,
    "build line (74 chars)": "#7 [2/4] RUN pip install --no-cache-dir -r requirements.txt && echo done ok",
}
#: Targets, in seconds.
RUN_500_TARGET = 1e-4
LOG_5MB_TARGET = 2.0


def five_megabyte_log() -> list[str]:
    rnd = random.Random(1)
    lines: list[str] = []
    size = 0
    while size < 5_000_000:
        if rnd.random() < 0.1:
            line = "x" * rnd.randint(200, 2000)
        else:
            words = "".join(rnd.choice(string.ascii_letters + " /.:-") for _ in range(rnd.randint(20, 120)))
            line = f"Step {rnd.randint(1, 12)}/12 : RUN {words}"
        lines.append(line)
        size += len(line) + 1
    return lines


def per_line(line: str, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        redact(line, SECRETS)
    return (time.perf_counter() - started) / repeat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in [*LINES, "5 MB log"]}
    log = five_megabyte_log()
    for _ in range(args.rounds):
        for name, line in LINES.items():
            results[name].append(per_line(line, 200))
        started = time.perf_counter()
        for line in log:
            redact(line, SECRETS)
        results["5 MB log"].append(time.perf_counter() - started)
    print(f"{'input':<24} {'median':>12} {'min–max':>22}")
    for name, times in results.items():
        scale, unit = (1.0, "s") if name == "5 MB log" else (1e3, "ms")
        print(f"{name:<24} {statistics.median(times) * scale:>9.3f} {unit:<2} "
              f"{min(times) * scale:>9.3f}–{max(times) * scale:.3f} {unit}")
    missed = statistics.median(results["500 letters"]) > RUN_500_TARGET or \
        statistics.median(results["5 MB log"]) > LOG_5MB_TARGET
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
