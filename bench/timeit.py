#!/usr/bin/env python3
"""Times shell commands side by side: interleaved rounds, medians, ratios to the first.

usage: timeit.py ROUNDS NAME=COMMAND [NAME=COMMAND ...]
Prints a Markdown table. Interleaving the commands round by round keeps a noisy machine fair
to all of them.
"""
import statistics
import subprocess
import sys
import time


def main() -> None:
    rounds = int(sys.argv[1])
    cmds = [arg.split("=", 1) for arg in sys.argv[2:]]
    times = {name: [] for name, _ in cmds}
    for name, cmd in cmds:  # warm-up
        subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(rounds):
        for name, cmd in cmds:
            start = time.perf_counter()
            subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times[cmds[0][0]])
    print(f"| command | median | min | ratio to {cmds[0][0]} |")
    print("|---|---|---|---|")
    for name, _ in cmds:
        med = statistics.median(times[name])
        print(f"| {name} | {med * 1000:.1f} ms | {min(times[name]) * 1000:.1f} ms | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
