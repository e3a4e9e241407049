"""Training memory as models grow: SANE (fixed window) against the per-neuron hyper-representation AE.

For each model size (an 8x8 CNN with two hidden layers widened to about 10k, 100k and 1M parameters) a fresh
process builds a batch of 16 random standardised models, then the autoencoder, its AdamW optimiser, and runs
three training steps (both AEs with their default settings; SANE: tokens of 64, windows of 32). It reports the
peak memory of that work above what the process held with the batch already in memory: on CPU the growth of
peak resident memory, on a GPU torch's peak allocation. A size that fails (out of memory, or past
--timeout seconds) is null. SANE's step reads a batch of windows gathered from the flat weights and its positions
hold no table as long as the sequence, so its memory should stay flat; the per-neuron AE's bottleneck maps all
tokens at once and grows with the model.

With --zoos (e.g. cnn,resnet,mixed) it also trains SANE on real zoos of --dataset's models (cnn: cnn-small, where
the per-neuron AE trains beside it; resnet: the ResNet preset; mixed: cnn-small and the ResNet in one
workspace), and reports held-out reconstruction, the property probes of the embedding (SANE: for each
aggregation of token latents) beside the flat-weight (W) and weight-statistics (s(W)) baselines, and the
generative table:
mean test accuracy at fine-tuning epochs 0, 1 and 3 of sampled models (the default sampler around the anchors, top 30%,
subsampled on validation accuracy) against random initialisation and the anchors. Each of --seeds makes its own
zoo, autoencoders and samples; every figure is the mean over seeds with its Student-t 95% interval, and SANE is
compared with the baselines (probes: W, s(W); generation: random init, anchors; accuracy kept: the per-neuron AE)
as higher, lower, or no measurable difference (the intervals overlap).
An epoch of SANE covers every window of every model once (about tokens / window steps per model), so it costs as
many steps as many epochs of the per-neuron AE on a long sequence: --sane-epochs sets SANE's count apart. Warm-up
takes a twelfth of the epochs (the default 5 of 60).
Usage: python bench/sane.py [--device auto|cpu|cuda] [--sizes 10000,100000,1000000] [--timeout 600]
                            [--zoos cnn,resnet,mixed] [--models 48] [--zoo-epochs 10] [--ae-epochs 60]
                            [--sane-epochs N (default: --ae-epochs)] [--dataset digits] [--seeds 3 | 0,4,7]
                            [--workdir DIR]
The last line of stdout is JSON: {"params": [...], "sane_peak_mb": [...], "neuron_ae_peak_mb": [...], and with
--zoos "zoos": {zoo: {"sane": {"recon_r2", "probe_r2", "probe_r2_by_aggregation", "curves", ... (means over
seeds), "intervals": {the same keys, each {"mean", "lo", "hi"}}}, "neuron_ae": {...} (cnn only)}}, "seeds",
"dataset"}; --sizes "" skips the memory part.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

BATCH = 16


def spec_for(target: int):
    """The digits CNN's first conv, then two hidden layers of width h, h chosen to reach ~target params."""
    from core.zoo.arch import ArchSpec, Conv

    def build(h: int) -> ArchSpec:
        return ArchSpec(f"cnn-h{h}", 1, 8, (Conv(8, 3, 1, 2),), (h, h), 10)

    h = 1
    while build(h + 1).n_params <= target:
        h = max(h + 1, int(h * 1.05))
    return build(h)


def measure(kind: str, target: int, device: str) -> dict:
    """Run in a child process: peak MB of building and training `kind` on a batch of `target`-size models."""
    import resource

    import torch

    from core.zoo.arch import param_names

    torch.manual_seed(0)
    spec = spec_for(target)
    flat = torch.randn(BATCH, spec.n_params, device=device)

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

    # The batch is data (the zoo lives in memory anyway), made before the baseline is read: SANE gathers its
    # windows from the flat weights, the per-neuron AE reads its tokens.
    if kind == "sane":
        from core.rep.sane import SANE, SANEConfig, sane_losses
        from core.rep.sequence import sequence_layout
        from core.rep.windows import epoch_windows, window_tokens

        layout = sequence_layout(param_names(spec), 64).to(device)
    else:
        from core.rep.autoencoder import AEConfig, HyperRepresentationAE
        from core.rep.losses import nt_xent, reconstruction_loss
        from core.rep.tokens import token_layout, tokenize

        layout = token_layout(spec)
        tokens = tokenize(layout, flat)
        mask, std = layout.mask.to(device), torch.ones(layout.n_tokens, 1, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = rss_mb()
    if kind == "sane":
        config = SANEConfig(token_width=64, window=32, halo=8)
        model = SANE(config).to(device)
        generator = torch.Generator(device=device).manual_seed(0)
        tiled = epoch_windows(BATCH, layout.n_tokens, config.window, generator)

        def step() -> torch.Tensor:
            picked = tiled[torch.randperm(len(tiled), generator=generator, device=device)[:BATCH]]
            window, pos, window_mask, _ = window_tokens(layout, flat, picked, min(config.window, layout.n_tokens))
            return sane_losses(model, window, window, window, window, window_mask, pos, 0.05, 0.1)[0]

    else:
        model = HyperRepresentationAE(layout.n_tokens, layout.width, AEConfig()).to(device)

        def step() -> torch.Tensor:
            _, recon, projection = model(tokens)
            return reconstruction_loss(recon, tokens, mask, std, True) + 0.05 * nt_xent(projection, projection, 0.1)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        step().backward()
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20 - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return {
        "params": spec.n_params,
        "tokens": layout.n_tokens,
        "ae_params": sum(p.numel() for p in model.parameters()),
        "peak_mb": round(peak, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--zoos", default="", help="also the probe and generative tables on: cnn,resnet,mixed")
    parser.add_argument("--dataset", default="digits", help="those zoos' dataset (digits, shapes, a folder)")
    parser.add_argument("--seeds", default="3", help="those zoos' seeds (zoo, autoencoder, sampler): N or a list")
    parser.add_argument("--models", type=int, default=48, help="models per architecture in those zoos")
    parser.add_argument("--zoo-epochs", type=int, default=10)
    parser.add_argument("--ae-epochs", type=int, default=60)
    parser.add_argument("--sane-epochs", type=int, default=None, help="SANE's epochs (default: --ae-epochs)")
    parser.add_argument("--workdir", default=None, help="keep the zoos and runs here (default: a temporary folder)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from core.runtime import tune_cpu_allocator

    tune_cpu_allocator()  # as the CLI and the app do
    from core.runtime import resolve_device

    device = resolve_device(args.device)
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), device)))
        return
    summary = memory_table(args, device) if args.sizes else {"device": device}
    if args.zoos:
        from core.parsing import seed_list
        from core.stats import as_json

        args.seeds = seed_list(args.seeds)
        zoos = {name: zoo_table(name, args, device) for name in args.zoos.split(",")}
        summary["zoos"] = as_json(zoos)
        summary["seeds"], summary["dataset"] = list(args.seeds), args.dataset
    print(json.dumps(summary))


ZOO_ARCHS = {"cnn": "cnn-small", "resnet": "resnet", "mixed": "cnn-small,resnet"}
CURVE_EPOCHS = (0, 1, 3)
PROBED = ("test_acc", "epoch", "ggap")


def zoo_table(name: str, args, device: str) -> dict:
    """For each seed: generate a zoo (or reuse it in --workdir), train SANE on it (and, on a CNN zoo, the per-neuron
    AE beside it), evaluate, sample; print the figures as means over seeds with their 95% intervals and return them
    (means under the keys of one seed's figures, and "intervals")."""
    import tempfile
    import time

    from core.rep.autoencoder import AEConfig
    from core.rep.sane import SANEConfig
    from core.store.workspace import Workspace
    from core.zoo.generate import ZooConfig, generate_zoo

    root = Path(args.workdir or tempfile.mkdtemp(prefix="sane-bench-"))
    kinds = {"sane": SANEConfig(), **({"neuron_ae": AEConfig()} if name == "cnn" else {})}
    epochs = {"sane": args.sane_epochs or args.ae_epochs, "neuron_ae": args.ae_epochs}
    per_seed: dict[str, list] = {kind: [] for kind in kinds}
    zoo_s = 0.0
    for seed in args.seeds:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", args.dataset).strip("_")
        workspace = Workspace(root / f"{name}-{slug}-{args.models}-e{args.zoo_epochs}-s{seed}")
        started = time.monotonic()
        zoo_config = ZooConfig(
            dataset=args.dataset,
            seed=seed,
            models=args.models,
            epochs=args.zoo_epochs,
            save_epochs=tuple(sorted({0, 1, args.zoo_epochs // 4, args.zoo_epochs // 2, args.zoo_epochs})),
            arch=ZOO_ARCHS[name],
        )
        if not workspace.exists():
            generate_zoo(workspace, zoo_config, device)
        zoo_s += time.monotonic() - started
        for kind, config in kinds.items():
            per_seed[kind].append(_learn_and_generate(workspace, config, epochs[kind], device, seed))
    figures = {kind: _over_seeds(records) for kind, records in per_seed.items()}
    _print_zoo(name, figures, args, zoo_s / len(args.seeds))
    return {"zoo_seconds": round(zoo_s / len(args.seeds), 1), **figures}


def _over_seeds(records: list[dict]) -> dict:
    """One autoencoder's figures over seeds: means under their own keys, the 95% t-intervals under "intervals"
    ({"mean", "lo", "hi"} each in the JSON), and what is not a number from the first seed."""
    from core.stats import intervals_over, means

    intervals = intervals_over(records)
    words = {k: records[0][k] for k in ("architectures", "generated_architecture")}
    return {**words, **means(intervals), "intervals": intervals}


def _print_zoo(name: str, figures: dict, args, zoo_s: float) -> None:
    from core.stats import format_interval, verdict

    sane = figures["sane"]
    seeds = ",".join(map(str, args.seeds))
    print(f"\n{name} zoo of {args.dataset} ({', '.join(sane['architectures'])}), {len(args.seeds)} seeds ({seeds}): "
          f"zoo {zoo_s:.0f} s per seed; mean ± half the 95% interval over seeds")  # fmt: skip
    for kind, f in figures.items():
        iv = f["intervals"]
        recalibrated = iv.get("recon_acc_ratio_recalibrated")
        note = (
            "" if recalibrated is None else f" ({format_interval(recalibrated)} with BatchNorm statistics re-estimated)"
        )
        kept = iv.get("recon_acc_ratio")
        print(
            f"{kind}: trained {f['epochs']:.0f} epochs in {f['train_seconds']:.0f} s; held-out reconstruction R^2 "
            f"{format_interval(iv['recon_r2'])}, accuracy kept {format_interval(kept) if kept else '-'}{note}"
        )
    if "neuron_ae" in figures and "recon_acc_ratio" in figures["neuron_ae"]["intervals"]:
        kept = {kind: f["intervals"]["recon_acc_ratio"] for kind, f in figures.items()}
        print(f"accuracy kept: {verdict(kept['sane'], kept['neuron_ae'], 'SANE', 'the per-neuron AE')}")
    print(f"{'probe R^2':<28}" + "".join(f"{p:>16}" for p in PROBED))
    for label, scores in _probe_rows(figures):
        print(f"{label:<28}" + "".join(f"{_pm(scores.get(p)):>16}" for p in PROBED))
    probes = sane["intervals"]["probe_r2"]
    for baseline in ("weights", "stats"):
        if "test_acc" in probes["embedding"] and "test_acc" in probes[baseline]:
            said = verdict(probes["embedding"]["test_acc"], probes[baseline]["test_acc"], "SANE embedding", baseline)
            print(f"probe R^2 test_acc: {said}")
    for kind, f in figures.items():
        print(
            f"{kind}: generated from {f['generated_architecture']} anchors; mean test accuracy at epochs {CURVE_EPOCHS}"
        )
        curves = f["intervals"]["curves"]
        for group, curve in curves.items():
            print(f"  {group:<14}" + "".join(f"{_pm(a):>16}" for a in curve))
        for i, epoch in enumerate(CURVE_EPOCHS):
            others = [
                verdict(curves["generated"][i], c[i], "generated", g) for g, c in curves.items() if g != "generated"
            ]
            print(f"  epoch {epoch}: " + "; ".join(others))


def _pm(interval) -> str:
    """ "0.912±0.004" (half the 95% interval), "0.912" where one seed gives none, "-" where there is no figure."""
    if interval is None:
        return "-"
    return f"{interval.estimate:.3f}" if not interval.known else f"{interval.estimate:.3f}±{interval.half_width:.3f}"


def _learn_and_generate(workspace, ae_config, epochs: int, device: str, seed: int) -> dict:
    import time

    from core.gen.config import SampleConfig
    from core.pipeline import generate, train_and_map
    from core.rep.evaluate import evaluate_run
    from core.rep.loop import TrainConfig

    started = time.monotonic()
    train = TrainConfig(epochs=epochs, batch_size=32, warmup_epochs=max(1, epochs // 12), seed=seed)
    run = train_and_map(workspace, ae_config, train, device=device)
    train_s = time.monotonic() - started
    result = evaluate_run(workspace, run.name, device)
    sample = SampleConfig(n=16, finetune_epochs=max(CURVE_EPOCHS), selection="subsample", baselines=False, seed=seed)
    generated = generate(workspace, sample, run.name, device).to_json()
    return {
        "architectures": result["architectures"],
        "epochs": epochs,
        "train_seconds": round(train_s, 1),
        "recon_r2": result["recon_r2"],
        "recon_acc_ratio": result["recon_acc_ratio"],
        **{k: result[k] for k in ("recon_acc_ratio_recalibrated",) if k in result},
        "probe_r2": result["probe_r2"],
        "probe_r2_by_aggregation": result.get("probe_r2_by_aggregation"),
        "generated_architecture": generated["architecture"],
        "curves": {g: [c[e] for e in CURVE_EPOCHS] for g, c in generated["curves"].items()},
        "selection": generated["selection"]["history"],
    }


def _probe_rows(figures: dict):
    """(label, {property: interval}): each run's embedding (SANE: per aggregation of token latents), then the
    weight baselines once (they do not depend on the run)."""
    for kind, f in figures.items():
        iv = f["intervals"]
        yield f"{kind} embedding", iv["probe_r2"]["embedding"]
        for how, scores in (iv.get("probe_r2_by_aggregation") or {}).items():
            yield f"  {kind}, {how} of tokens", scores
    baselines = figures["sane"]["intervals"]["probe_r2"]
    yield "flat weights W", baselines["weights"]
    yield "weight statistics s(W)", baselines["stats"]


def memory_table(args, device: str) -> dict:
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = {}
    for kind in ("sane", "neuron_ae"):
        for size in sizes:
            try:
                done = subprocess.run(
                    [sys.executable, __file__, "--device", device, "--child", kind, str(size)],
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                )
                rows[kind, size] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
                if done.returncode != 0:
                    print(f"{kind} at {size}: failed ({done.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
            except subprocess.TimeoutExpired:
                rows[kind, size] = None
                print(f"{kind} at {size}: over {args.timeout:.0f} s", file=sys.stderr)
    params = [spec_for(size).n_params for size in sizes]
    print(f"device {device}, batch {BATCH}; peak MB above the batch already in memory")
    print(f"{'params':>10s} {'SANE tokens':>12s} {'SANE MB':>9s} {'AE tokens':>10s} {'AE weights':>11s} {'AE MB':>9s}")
    for size, n in zip(sizes, params, strict=True):
        sane, ae = rows["sane", size], rows["neuron_ae", size]

        def cell(row, key, fmt="{:.1f}"):
            return fmt.format(row[key]) if row else "failed"

        sane_cells = f"{cell(sane, 'tokens', '{:d}'):>12s} {cell(sane, 'peak_mb'):>9s}"
        ae_cells = f"{cell(ae, 'tokens', '{:d}'):>10s} {cell(ae, 'ae_params', '{:,d}'):>11s} {cell(ae, 'peak_mb'):>9s}"
        print(f"{n:10d} {sane_cells} {ae_cells}")
    return {
        "device": device,
        "params": params,
        "sane_peak_mb": [rows["sane", s]["peak_mb"] if rows["sane", s] else None for s in sizes],
        "neuron_ae_peak_mb": [rows["neuron_ae", s]["peak_mb"] if rows["neuron_ae", s] else None for s in sizes],
        "batch": BATCH,
        "window": 32,
        "token_width": 64,
        "log10_params": [round(math.log10(p), 2) for p in params],
    }


if __name__ == "__main__":
    main()
