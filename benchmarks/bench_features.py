"""How fast does the Inception feature extractor run here, and what FID does real data
score against real data on digits?

Throughput (images/s, 32 × 32 inputs resized to 299 × 299 inside the timed region) of
three ways to run the same Inception-v3 weights, side by side:

* ``gantk``: gantk's ``inception`` extractor (the TorchScript file frozen and optimised
  for inference: ``torch.jit.freeze`` + ``optimize_for_inference``);
* ``torchscript``: the same file as ``torch.jit.load`` gives it (what a user of the
  file gets without gantk);
* ``eager``: gantk's own ``FIDInceptionV3`` module (the path for pytorch-fid's and
  torch-fidelity's state-dict files), its weights carried over from the TorchScript file.

Then (``--floor``) the real-vs-real FID floor of scikit-learn's digits at the digits
preset's 16 × 16: two disjoint random halves (898 vs 899 images), and the digits
protocol's own comparison (the 540 held-out digits vs 540 of the training split).

    python benchmarks/bench_features.py --floor --json benchmarks/results/features-cpu.json

Writes JSON (rows + run metadata) with ``--json``; prints a table.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

from common import run_metadata

import numpy as np
import torch
import torch.nn.functional as F

from gantk.errors import DataError
from gantk.eval import digits_split, metrics
from gantk.eval import features as feat
from gantk.eval.inception import FIDInceptionV3


def _eager_from_torchscript(path: str) -> torch.nn.Module | None:
    """FIDInceptionV3 with the TorchScript file's weights, carried over by layer order."""
    ts = torch.jit.load(path, map_location="cpu").eval()
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in ts.state_dict().items():
        base, leaf = k.rsplit(".", 1)
        groups.setdefault(base, {})[leaf] = v
    net = FIDInceptionV3()
    convs = [n for n, m in net.named_modules() if type(m).__name__ == "BasicConv2d"]
    if len(convs) != len(groups) or any({"weight", "beta", "mean", "var"} - set(g) for g in groups.values()):
        return None
    state = {}
    for mine, theirs in zip(convs, groups.values()):
        state.update({f"{mine}.conv.weight": theirs["weight"], f"{mine}.bn.bias": theirs["beta"],
                      f"{mine}.bn.running_mean": theirs["mean"], f"{mine}.bn.running_var": theirs["var"]})
    return FIDInceptionV3.from_state_dict(state)


def throughput(ext, nets: dict[str, torch.nn.Module], n: int, batch_sizes: list[int]) -> list[dict]:
    x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rows = []
    for bs in batch_sizes:
        for name, net in nets.items():
            with torch.no_grad():
                net(ext.prepare(x[:bs]))  # warm-up (TorchScript profiles its first calls)
                net(ext.prepare(x[:bs]))
                t0 = time.perf_counter()
                for s in range(0, n, bs):
                    net(ext.prepare(x[s:s + bs]))
                dt = time.perf_counter() - t0
            rows.append({"way": name, "batch_size": bs, "images": n, "seconds": round(dt, 2),
                         "images_per_s": round(n / dt, 2)})
            print(f"{name:12s} batch {bs:3d}: {n / dt:7.2f} images/s ({n} images, {dt:.1f} s)", flush=True)
    return rows


def floor(ext) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.data).float().reshape(-1, 1, 8, 8).div(8.0).sub(1.0)
    x16 = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(-1, 1)
    t0 = time.perf_counter()
    f = feat.extract_features(ext, x16)
    seconds = time.perf_counter() - t0
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).numpy()
    a, b = f[perm[: len(x) // 2]], f[perm[len(x) // 2:]]
    # the digits protocol's split (gantk.eval.digits.digits_split), as indices into f
    i_train, i_test = train_test_split(np.arange(len(x)), test_size=0.3, random_state=0, stratify=d.target)
    assert torch.equal(x[i_test], digits_split()[2])
    f_train, f_test = f[i_train[:540]], f[i_test]
    out = {"extract_seconds_1797": round(seconds, 1), "images_per_s_1797": round(len(x) / seconds, 2)}
    for name, (p, q) in {"halves": (a, b), "protocol_540": (f_train, f_test)}.items():
        kid, kid_sd = metrics.kernel_inception_distance(p, q)
        out[name] = {"n": [len(p), len(q)], "fid": round(metrics.frechet_distance(p, q), 3),
                     "kid": round(kid, 5), "kid_std": round(kid_sd, 5),
                     **{k: round(v, 3) for k, v in metrics.precision_recall(p, q).items()}}
        print(f"real vs real, {name}: {out[name]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="images per timing")
    ap.add_argument("--batch-sizes", default="1,16,50")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--floor", action="store_true", help="also the digits real-vs-real FID floor")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    try:
        ext = feat.load_extractor("inception")
    except DataError as exc:
        raise SystemExit(f"no weights: {exc}") from None
    nets: dict[str, torch.nn.Module] = {"gantk": ext.net}
    if feat._is_torchscript(Path(ext.weights_file)):
        nets["torchscript"] = torch.jit.load(ext.weights_file, map_location="cpu").eval()
        eager = _eager_from_torchscript(ext.weights_file)
        if eager is not None:
            nets["eager"] = eager
        else:
            print("note: the TorchScript file's layers do not map onto FIDInceptionV3; no eager row")
    else:
        print("note: the weights are a state dict; gantk runs them eagerly, no TorchScript rows")
    rows = throughput(ext, nets, args.n, [int(b) for b in args.batch_sizes.split(",")])
    base = {r["batch_size"]: r["images_per_s"] for r in rows if r["way"] == "gantk"}
    for r in rows:
        r["vs_gantk"] = round(r["images_per_s"] / base[r["batch_size"]], 3)
    result = {"meta": run_metadata("cpu"), "weights_file": ext.weights_file, "weights_sha256": ext.weights_sha256,
              "resize": ext.resize, "rows": rows}
    if args.floor:
        result["floor"] = floor(ext)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "meta"}, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
