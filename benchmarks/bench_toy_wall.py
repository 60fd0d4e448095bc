"""What does the toolkit cost on top of the math? Wall time of a full toy run with
`gantk train` (the README default: 25gaussians, wgan-gp) vs the same run written as a
plain PyTorch script (same networks, batch, optimizer, lr schedule, steps; no plugins, logging,
progress, checkpoints or pictures). Target: ≤ 5% overhead.

    python benchmarks/bench_toy_wall.py [--steps 300] [--repeats 2]

Both are run as fresh processes, alternating, so start-up costs count for both.
Writes benchmarks/results/toy-wall.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import HERE, run_metadata

PLAIN = r'''
import sys, torch
from torch import nn
steps = int(sys.argv[1])
torch.manual_seed(0)
def mlp(i, o, hidden, width):
    layers, d = [], i
    for _ in range(hidden):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, o))
G, D = mlp(2, 2, 4, 512), mlp(2, 1, 3, 256)  # the toy mixtures' networks
B = 512  # and their batch under wgan-gp with gp
g = torch.Generator().manual_seed(0)
grid = torch.arange(-2, 3, dtype=torch.float64) * 2
centres = torch.cartesian_prod(grid, grid)
idx = torch.randint(0, 25, (100000,), generator=g)
data = ((torch.randn(100000, 2, generator=g, dtype=torch.float64) * 0.05 + centres[idx]) / 2.828).float()
oG = torch.optim.Adam(G.parameters(), 2e-3, betas=(0.5, 0.9))
oD = torch.optim.Adam(D.parameters(), 2e-3, betas=(0.5, 0.9))
for it in range(steps):
    for o in (oG, oD):  # linear decay to 0 over the run
        for group in o.param_groups:
            group["lr"] = 2e-3 * (1 - it / steps)
    for c in range(5):
        real = data[torch.randint(0, len(data), (B,))]
        with torch.no_grad():
            fake = G(torch.randn(B, 2))
        loss = D(fake).mean() - D(real).mean()
        if (5 * it + c) % 4 == 0:  # lazy penalty: every 4th critic step, weighted 4
            a = torch.rand(B, 1)
            xh = (a * real + (1 - a) * fake).requires_grad_(True)
            gr, = torch.autograd.grad(D(xh).sum(), xh, create_graph=True)
            loss = loss + 4 * 0.1 * ((gr.norm(2, dim=1) - 1) ** 2).mean()
        oD.zero_grad()
        loss.backward()
        oD.step()
    for p in D.parameters():
        p.requires_grad_(False)
    oG.zero_grad()
    (-D(G(torch.randn(B, 2))).mean()).backward()
    oG.step()
    for p in D.parameters():
        p.requires_grad_(True)
'''


def run(cmd, env=None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gantk-wall-"))
    script = tmp / "plain.py"
    script.write_text(PLAIN)
    env = {**os.environ, "GANTK_LOAD_PLUGINS": ""}
    gantk_cmd = [sys.executable, "-m", "gantk", "train", "--loss", "wasserstein", "--lipschitz", "gp",
                 "--steps", str(args.steps), "--device", "cpu", "--out", str(tmp / "runs")]
    times = {"gantk": [], "plain": []}
    for _ in range(args.repeats):
        times["plain"].append(run([sys.executable, str(script), str(args.steps)], env))
        times["gantk"].append(run(gantk_cmd, env))
    med = {k: statistics.median(v) for k, v in times.items()}
    overhead = med["gantk"] / med["plain"] - 1
    result = {"meta": run_metadata("cpu"), "steps": args.steps, "times_s": times, "median_s": med,
              "overhead": overhead}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "toy-wall.json").write_text(json.dumps(result, indent=2))
    print(f"{args.steps} steps: gantk {med['gantk']:.1f} s, plain script {med['plain']:.1f} s, "
          f"overhead {100 * overhead:+.1f}% (target <= 5%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
