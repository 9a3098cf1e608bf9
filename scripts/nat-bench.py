#!/usr/bin/env python3
"""Internet-reach figures in the NAT lab (scripts/nat-lab.sh; needs root).

    scripts/nat-bench.py [--naac PATH] [--tries N]

For each kind of NAT on home B (cone: ports kept; symmetric: a random port per
connection): a relay on the public host, a provider at home A joined to it, and N small
jobs run from home B through the provider's relayed address. Prints, per NAT kind, how
many tries ended on a hole-punched direct connection and the median time from the start
of `naac run` to it; then the throughput of 1 MiB results over the direct path (cone)
against the relayed one (symmetric), and what the relay's process spent (CPU, memory)
per relayed connection.

PATH defaults to target/release/naac (build it with `cargo build --release`).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "scripts", "nat-lab.sh")
PI = os.path.join(ROOT, "examples", "pi", "pi.wasm")
TESTKIT = os.path.join(ROOT, "examples", "testkit", "testkit.wasm")
STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def ns(prefix, name, naac, home, *args, **kw):
    env = dict(os.environ, NAAC_HOME=home, NO_COLOR="1", NAAC_CLAIM_WINDOW="0s")
    env.update(kw.pop("env", {}))
    return ["ip", "netns", "exec", f"{prefix}-{name}", naac, *args], env


def start_node(prefix, name, naac, home, args, want):
    cmd, env = ns(prefix, name, naac, home, "node", *args)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = p.stdout.readline()
        if line.startswith("listening on ") and want(line.split()[2]):
            return p, line.split()[2]
    raise SystemExit(f"{name}: no address in time")


def seconds(stamp):
    t = time.strptime(stamp.split(".")[0], "%Y-%m-%dT%H:%M:%S")
    return time.mktime(t) + float("0." + stamp.split(".")[1])


def cpu_and_rss(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return cpu, rss


def lab(kind, naac, tries, work):
    prefix = f"nb{kind[0]}"
    subprocess.run([LAB, "down", prefix], check=False)
    subprocess.run([LAB, "up", prefix, kind], check=True)
    procs = []
    try:
        relay, raddr = start_node(prefix, "pub", naac, f"{work}/{kind}-relay",
                                  ["--relay", "--no-mdns", "--listen", "/ip4/198.18.0.10/tcp/4001"],
                                  lambda a: True)
        procs.append(relay)
        prov, circuit = start_node(prefix, "hA", naac, f"{work}/{kind}-prov",
                                   ["--provide", "--ephemeral", "--slots", "2", "--no-mdns", "--join",
                                    raddr, "--listen", "/ip4/0.0.0.0/tcp/4002"],
                                   lambda a: "/p2p-circuit/" in a)
        procs.append(prov)
        peer = circuit.rsplit("/", 1)[1]
        small = os.path.join(work, "small.toml")
        with open(small, "w") as f:
            f.write(f'name = "small"\nmodule = "{PI}"\nargs = ["{{seed}}", "100000"]\n'
                    '[sweep]\nseed = { from = 0, to = 4 }\n')
        cpu0, rss0 = cpu_and_rss(relay.pid)
        direct, times = 0, []
        for i in range(tries):
            cmd, env = ns(prefix, "hB", naac, f"{work}/{kind}-req{i}", "run", small, "--json",
                          "--no-mdns", "--no-pay", "--join", circuit, "--out", f"{work}/{kind}-out{i}",
                          env={"RUST_LOG": "naac_net=info"})
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            stamps = STAMP.findall(out.stderr)
            hit = [l for l in out.stderr.splitlines() if f"direct connection to {peer}" in l]
            if hit and stamps:
                direct += 1
                times.append(seconds(STAMP.search(hit[0]).group(1)) - seconds(stamps[0]))
        cpu1, rss1 = cpu_and_rss(relay.pid)
        # 16 results of 1 MiB each, over whatever path this NAT allows.
        big = os.path.join(work, "big.toml")
        with open(big, "w") as f:
            f.write(f'name = "big"\nmodule = "{TESTKIT}"\nargs = ["outfile", "r{{i}}.bin", "1048576"]\n'
                    '[sweep]\ni = { from = 0, to = 16 }\n')
        cmd, env = ns(prefix, "hB", naac, f"{work}/{kind}-big", "run", big, "--json", "--no-mdns",
                      "--no-pay", "--join", circuit, "--out", f"{work}/{kind}-bigout")
        t0 = time.time()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.time() - t0
        ok = out.returncode == 0 and json.loads(out.stdout)["tasks"]["succeeded"] == 16
        return {
            "nat": kind,
            "tries": tries,
            "direct": direct,
            "median_seconds_to_direct": statistics.median(times) if times else None,
            "results_mib_per_second": (16 / wall) if ok else None,
            "big_job_ok": ok,
            "big_job_error": None if ok else out.stderr.strip().splitlines()[-3:],
            "relay_cpu_ms_per_circuit": (cpu1 - cpu0) * 1000 / max(tries, 1),
            "relay_rss_bytes": rss1,
            "relay_rss_growth_bytes": rss1 - rss0,
        }
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run([LAB, "down", prefix], check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--naac", default=os.path.join(ROOT, "target", "release", "naac"))
    ap.add_argument("--tries", type=int, default=20)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("nat-bench: needs root (network namespaces)")
    if not os.path.exists(a.naac):
        sys.exit(f"nat-bench: no naac binary at {a.naac}; build it with cargo build --release")
    work = tempfile.mkdtemp(prefix="nat-bench-")
    try:
        rows = [lab(k, a.naac, a.tries, work) for k in ("cone", "symmetric")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in rows:
        med = r["median_seconds_to_direct"]
        print(f"{r['nat']:>9} NAT: {r['direct']}/{r['tries']} hole-punched"
              + (f", median {med:.3f} s to direct" if med is not None else "")
              + (f"; 1 MiB results {r['results_mib_per_second']:.1f} MiB/s" if r["results_mib_per_second"] else "; 1 MiB results failed")
              + f"; relay {r['relay_cpu_ms_per_circuit']:.1f} ms CPU per circuit, RSS {r['relay_rss_bytes'] >> 20} MiB")
    direct, relayed = rows[0]["results_mib_per_second"], rows[1]["results_mib_per_second"]
    if direct and relayed:
        print(f"relayed / direct result throughput: {relayed / direct:.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
