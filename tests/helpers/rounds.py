#!/usr/bin/env python3
"""Time commands in interleaved rounds (the benchmarks' helper; standard library only).

    rounds.py RUNS COMMANDS_JSON

COMMANDS_JSON is a JSON object {name: argv, ...}; the first is the floor. Each round
runs every command once, in order, so a slow spell of the shared machine hits each
alike; two warm-up rounds are not counted. For each command it prints one line:

    NAME WALL_MS CPU_MS OWN_WALL_MS OWN_CPU_MS

the medians of its wall time and of its CPU time (user + system, children
included, also those it left to end after it), and the medians over the rounds
of its time minus the floor's in the same round (0 for the floor itself). A
command that fails is still timed (the benchmarks time commands whose verdict
is a failure on a fixture host)."""
import ctypes
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time


def become_subreaper():
    """Processes a command leaves to end after it (orphans) are reaped here, not by init,
    so their CPU time is counted as the command's too."""
    PR_SET_CHILD_SUBREAPER = 36
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("rounds.py: cannot become a child subreaper")


def leftover_children():
    """The processes reparented to this one (its own children, as a subreaper)."""
    pids = []
    for task in os.listdir("/proc/self/task"):
        with open("/proc/self/task/%s/children" % task) as f:
            pids += [int(p) for p in f.read().split()]
    return pids


def cpu_of_children():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def run_once(argv):
    cpu_before = cpu_of_children()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.waitpid(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = 0  # reaped by waitpid
    # The wall time ends with the command; its CPU time includes what it left running,
    # which must end within seconds (a daemon it started would hang every later round).
    deadline = time.monotonic() + 10
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                left = leftover_children()
                for child in left:
                    os.kill(child, signal.SIGKILL)
                sys.exit("rounds.py: %s left processes running after it ended (killed: %s)" % (argv[0], left))
            time.sleep(0.005)
    return wall * 1000, cpu_of_children() - cpu_before


def main():
    become_subreaper()
    runs = int(sys.argv[1])
    commands = json.loads(sys.argv[2])
    names = list(commands)
    times = {name: [] for name in names}
    for round_no in range(runs + 2):
        for name in names:
            t = run_once(commands[name])
            if round_no >= 2:
                times[name].append(t)
    floor = times[names[0]]
    for name in names:
        own_wall = [t[0] - f[0] for t, f in zip(times[name], floor)]
        own_cpu = [t[1] - f[1] for t, f in zip(times[name], floor)]
        print("%s %.2f %.2f %.2f %.2f" % (name, statistics.median(t[0] for t in times[name]),
                                         statistics.median(t[1] for t in times[name]),
                                         statistics.median(own_wall), statistics.median(own_cpu)))


main()
