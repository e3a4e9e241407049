"""Training the hyper-representation autoencoder: runs on disk, the loop, checkpoints and resumption.

A run lives in `<workspace>/ae/<run>/`: `config.json` (settings, split, status), `stats.safetensors` (per-layer
statistics), `train_state.pt` (everything needed to resume, written atomically after every epoch),
`model.safetensors` (the weights with the best validation reconstruction) and `history.parquet`.
Resuming restores model, optimiser, schedule and random-generator states, so on CPU an interrupted and
resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
import torch

from core.zoo.arch import ArchSpec, param_names
from core.rep.autoencoder import AEConfig, HyperRepresentationAE
from core.errors import Interrupted, UserError, ZooError
from core.store.layout import list_runs, run_statuses, runs_dir
from core.rep.losses import nt_xent, reconstruction_loss
from core.rep.prepare import PreparedZoo, Split, prepare, split_models
from core.rep.sane import SANE, SANEConfig, decode_sequence, encode_sequence, random_windows, sane_losses
from core.rep.sequence import SequenceLayout, sequence_layout, to_sequence
from core.rep.tokens import add_noise, random_erase, random_permutation_indices, tokenize
from core.store.workspace import Workspace, atomic_path, read_json, read_tensors, write_json, write_parquet, write_tensors
from core.zoo.model_zoo import Progress, Zoo, combined_table, load_zoos


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    gamma: float = 0.05  # weight of the contrastive loss; 1 - gamma weighs reconstruction
    temperature: float = 0.1
    noise: float = 0.05  # additive noise, in units of each layer's std
    # Off by default: on the 8-init digits zoo random erasing (the 2021 paper's p = 0.5) lowered the share
    # of held-out checkpoints keeping 90% of their accuracy from 0.97 to 0.92, with the same probes.
    erase_probability: float = 0.0
    erase_area: tuple[float, float] = (0.02, 0.33)
    permute_probability: float = 0.0
    pca_init: bool = True  # start the AE's linear path at PCA of the training zoo (see autoencoder.py)
    layer_norm: bool = True
    align: bool = True
    align_iterations: int = 2
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    patience: int = 40
    clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise UserError("autoencoder training needs epochs >= 1 and batch size >= 2")
        if not 0 <= self.gamma <= 1:
            raise UserError(f"gamma must lie in [0, 1], got {self.gamma}")


@dataclass
class AERun:
    folder: Path
    ae_config: AEConfig | SANEConfig
    train_config: TrainConfig
    split: Split
    status: str
    model: HyperRepresentationAE | SANE | None = None
    stats: dict[str | None, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    history: pl.DataFrame = field(default_factory=pl.DataFrame)
    aggregation: str = "mean"  # SANE: how token latents make the map embedding (`ae embed` changes it)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def kind(self) -> str:
        return kind_of(self.ae_config)

    def prepare(self, zoo: Zoo) -> PreparedZoo:
        """One architecture's zoo made ready with this run's split and statistics."""
        stats = self.stats.get(zoo.spec.name, self.stats.get(None))
        if stats is None:
            raise UserError(f"{self.folder}: this run was not trained on architecture {zoo.spec.name}")
        return prepare(zoo, self.split, self.train_config.align, self.train_config.align_iterations, stats)


def kind_of(ae_config: AEConfig | SANEConfig) -> str:
    return "sane" if isinstance(ae_config, SANEConfig) else "hyperrep"


def run_name(ae_config: AEConfig | SANEConfig, train_config: TrainConfig) -> str:
    """Runs are named by their settings, so the same command resumes its own run and other settings get a new one."""
    digest = hashlib.sha256(json.dumps([asdict(ae_config), asdict(train_config)], sort_keys=True).encode())
    return f"{kind_of(ae_config)}-{digest.hexdigest()[:8]}"


def sane_layout(spec, config: SANEConfig) -> SequenceLayout:
    return sequence_layout(param_names(spec), config.token_width)


def load_run(workspace: Workspace, name: str | None = None, with_model: bool = True) -> AERun:
    """A run by name, or the latest finished one."""
    if name is None:
        finished = [r for r, status in run_statuses(workspace).items() if status == "done"]
        if not finished:
            raise ZooError(f"{workspace.root}: no finished autoencoder run; train one with `ae train`")
        name = finished[-1]
    folder = runs_dir(workspace) / name
    if not (folder / "config.json").exists():
        raise ZooError(f"{folder}: no such autoencoder run (have: {', '.join(list_runs(workspace)) or 'none'})")
    config = read_json(folder / "config.json")
    train_config = TrainConfig(
        **{
            **config["train"],
            "erase_area": tuple(config["train"]["erase_area"]),
            "split": tuple(config["train"]["split"]),
        }
    )
    kind = config.get("kind", "hyperrep")
    ae_config = SANEConfig(**config["ae"]) if kind == "sane" else AEConfig(**config["ae"])
    run = AERun(folder, ae_config, train_config, Split(**config["split"]), config["status"])
    run.stats = _read_stats(folder / "stats.safetensors")
    run.aggregation = config.get("aggregation", "mean")
    if with_model:
        if run.status != "done":
            raise ZooError(f"{folder}: run is unfinished; run `ae train` again with the same settings to resume it")
        weights = read_tensors(folder / "model.safetensors")
        if kind == "sane":
            run.model = SANE(ae_config)
        else:
            run.model = HyperRepresentationAE(config["n_tokens"], config["token_width"], ae_config)
        run.model.load_state_dict(weights)
        run.model.eval()
    if (folder / "history.parquet").exists():
        run.history = pl.read_parquet(folder / "history.parquet")
    return run


# ---------------------------------------------------------------- the loop


def _schedule(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


class _Augmenter:
    """Two differently augmented views of a batch, and the clean targets each view must reconstruct."""

    def __init__(self, prepared: PreparedZoo, config: TrainConfig, generator: torch.Generator, device: str):
        self.prepared, self.config, self.generator, self.device = prepared, config, generator, device
        if config.permute_probability > 0 and prepared.layout is None:
            raise UserError(
                f"permutation augmentation is available for the CNN family only, not {prepared.zoo.spec.name}"
            )
        if prepared.layout is not None:  # token-space augmentations of the per-neuron autoencoder
            self.mask = prepared.layout.mask.to(device)
            self.scale = torch.ones(prepared.layout.n_tokens, 1, device=device)  # tokens are standardised
        self.permutations = None
        if config.permute_probability > 0:
            cpu = torch.Generator().manual_seed(config.seed)
            self.permutations = random_permutation_indices(prepared.zoo.spec, 256, cpu).to(device)

    def permute(self, flat: torch.Tensor) -> torch.Tensor:
        """Each row permuted (hidden units, function unchanged) with the configured probability."""
        if self.permutations is not None:
            pick = torch.randint(
                0, len(self.permutations), (flat.shape[0],), generator=self.generator, device=self.device
            )
            permute = (
                torch.rand(flat.shape[0], generator=self.generator, device=self.device)
                < self.config.permute_probability
            )
            gather = torch.where(
                permute.unsqueeze(1), self.permutations[pick], torch.arange(flat.shape[1], device=self.device)
            )
            flat = torch.gather(flat, 1, gather)
        return flat

    def view(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clean = tokenize(self.prepared.layout, self.permute(flat))
        noisy = add_noise(clean, self.mask, self.scale, self.config.noise, self.generator)
        return random_erase(noisy, self.config.erase_probability, self.config.erase_area, self.generator), clean


def _losses(model, augmenter: _Augmenter, flat: torch.Tensor, token_std: torch.Tensor, config: TrainConfig):
    (view_a, target_a), (view_b, target_b) = augmenter.view(flat), augmenter.view(flat)
    _, recon_a, proj_a = model(view_a)
    _, recon_b, proj_b = model(view_b)
    mask = augmenter.mask
    # Tokens are standardised; scaling by the layer std gives raw-weight errors, which the loss then
    # normalises per layer or, in the ablation, leaves as they are.
    rec = 0.5 * sum(
        reconstruction_loss(r * token_std, t * token_std, mask, token_std, config.layer_norm)
        for r, t in ((recon_a, target_a), (recon_b, target_b))
    )
    con = nt_xent(proj_a, proj_b, config.temperature) if config.gamma > 0 else torch.zeros((), device=flat.device)
    return config.gamma * con + (1 - config.gamma) * rec, rec, con


def _batches(count: int, batch_size: int, generator: torch.Generator, device: str) -> list[torch.Tensor]:
    """A shuffled epoch of row indices in batches, leaving out a last batch of one (the contrastive loss needs a
    negative)."""
    order = torch.randperm(count, generator=generator, device=device)
    return [b for b in (order[i : i + batch_size] for i in range(0, count, batch_size)) if len(b) >= 2]


class _HyperRepMethod:
    """The per-neuron autoencoder's part of the loop: its model, start, batches, losses and validation criterion."""

    def __init__(self, prepared: PreparedZoo, ae_config: AEConfig, config: TrainConfig, generator, device: str):
        self.prepared, self.ae_config, self.config, self.generator, self.device = (
            prepared, ae_config, config, generator, device
        )  # fmt: skip
        self.augmenter = _Augmenter(prepared, config, generator, device)
        self.token_std = prepared.token_std.to(device)
        self.flat = prepared.standardised[torch.from_numpy(prepared.rows("train"))].to(device)
        self.steps_per_epoch = math.ceil(len(self.flat) / config.batch_size)

    def build(self) -> HyperRepresentationAE:
        layout = self.prepared.layout
        return HyperRepresentationAE(layout.n_tokens, layout.width, self.ae_config).to(self.device)

    def initialise(self, model: HyperRepresentationAE) -> None:
        if self.config.pca_init:
            model.init_linear_path(tokenize(self.prepared.layout, self.flat.cpu()))

    def batches(self) -> list[torch.Tensor]:
        return _batches(len(self.flat), self.config.batch_size, self.generator, self.device)

    def losses(self, model, batch: torch.Tensor):
        return _losses(model, self.augmenter, self.flat[batch], self.token_std, self.config)

    def validation_loss(self, model) -> float:
        return validation_loss(model, self.prepared, self.device)


class _SANEPart:
    """One architecture's training data for SANE: its sequence layout, standardised training models, and
    (for the CNN family, when asked) its function-preserving permutations."""

    def __init__(self, prepared: PreparedZoo, ae_config: SANEConfig, config: TrainConfig, generator, device: str):
        self.prepared = prepared
        self.layout = sane_layout(prepared.zoo.spec, ae_config)
        self.positions, self.mask = self.layout.positions.to(device), self.layout.mask.to(device)
        self.permuter = _Augmenter(prepared, config, generator, device)
        self.flat = prepared.standardised[torch.from_numpy(prepared.rows("train"))].to(device)

    def view(self, rows: torch.Tensor) -> torch.Tensor:
        return to_sequence(self.layout, self.permuter.permute(self.flat[rows]))


class _SANEMethod:
    """SANE's part of the loop: each step trains on one random window of the sequences of a batch of models of
    one architecture, two views differing by noise (and by a hidden-unit permutation, when that augmentation
    is on). With several architectures, every epoch visits each one's models in batches of its own, in a
    shuffled order."""

    def __init__(self, parts: list[PreparedZoo], ae_config: SANEConfig, config: TrainConfig, generator, device: str):
        self.ae_config, self.config, self.generator, self.device = ae_config, config, generator, device
        self.parts = [_SANEPart(p, ae_config, config, generator, device) for p in parts]
        self.steps_per_epoch = sum(math.ceil(len(p.flat) / config.batch_size) for p in self.parts)

    def build(self) -> SANE:
        return SANE(self.ae_config).to(self.device)

    def initialise(self, model: SANE) -> None:
        longest = max(p.layout.n_tokens for p in self.parts)
        if longest > self.ae_config.max_tokens:
            raise UserError(f"the zoo's models make up to {longest} tokens; raise max_tokens or token_width")

    def batches(self) -> list[tuple[_SANEPart, torch.Tensor]]:
        batches = [
            (part, rows)
            for part in self.parts
            for rows in _batches(len(part.flat), self.config.batch_size, self.generator, self.device)
        ]
        if len(self.parts) == 1:
            return batches
        order = torch.randperm(len(batches), generator=self.generator, device=self.device).tolist()
        return [batches[i] for i in order]

    def losses(self, model: SANE, batch: tuple[_SANEPart, torch.Tensor]):
        part, rows = batch
        clean_a, clean_b = part.view(rows), part.view(rows)
        target_a, positions, mask = random_windows(
            clean_a, part.positions, part.mask, self.ae_config.window, self.generator
        )
        start = int(positions[0, 0, 0])
        target_b = clean_b[:, start : start + target_a.shape[1]]
        noise = self.config.noise
        view_a = target_a + noise * torch.randn(target_a.shape, generator=self.generator, device=self.device) * mask
        view_b = target_b + noise * torch.randn(target_b.shape, generator=self.generator, device=self.device) * mask
        return sane_losses(
            model, view_a, view_b, target_a, target_b, mask, positions, self.config.gamma, self.config.temperature
        )

    @torch.no_grad()
    def validation_loss(self, model: SANE) -> float:
        """Masked squared error of clean validation models, over every architecture's entries."""
        model.eval()
        error, entries = 0.0, 0.0
        for part in self.parts:
            rows = torch.from_numpy(part.prepared.rows("val"))
            tokens = to_sequence(part.layout, part.prepared.standardised[rows]).to(self.device)
            recon = decode_sequence(model, encode_sequence(model, tokens, part.positions), part.positions)
            error += float(((recon - tokens) * part.mask).pow(2).sum())
            entries += float(part.mask.sum()) * len(tokens)
        return error / max(entries, 1.0)


@torch.no_grad()
def validation_loss(model: HyperRepresentationAE, prepared: PreparedZoo, device: str) -> float:
    """Layer-normalised reconstruction error of clean validation tokens (the model-selection criterion)."""
    model.eval()
    tokens = prepared.tokens(prepared.rows("val")).to(device)
    token_std = prepared.token_std.to(device)
    mask = prepared.layout.mask.to(device)
    recon = model.decode(model.encode(tokens))
    return float(reconstruction_loss(recon * token_std, tokens * token_std, mask, token_std, True))


def train_autoencoder(
    workspace: Workspace,
    ae_config: AEConfig | None = None,
    train_config: TrainConfig | None = None,
    run: str | None = None,
    device: str = "cpu",
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AERun:
    ae_config, train_config = ae_config or AEConfig(), train_config or TrainConfig()
    zoos = load_zoos(workspace)
    if len(zoos) > 1 and kind_of(ae_config) != "sane":
        names = ", ".join(z.spec.name for z in zoos)
        raise UserError(
            f"{workspace.root} holds {len(zoos)} architectures ({names}); the per-neuron autoencoder reads one "
            "architecture: train SANE (--kind sane) on the whole zoo"
        )
    if kind_of(ae_config) != "sane" and not isinstance(zoos[0].spec, ArchSpec):
        raise UserError(
            f"the per-neuron autoencoder reads the CNN family, not {zoos[0].spec.name}: train SANE (--kind sane)"
        )
    name = run or run_name(ae_config, train_config)
    folder = runs_dir(workspace) / name
    if (folder / "config.json").exists() and read_json(folder / "config.json").get("status") == "done":
        _resume_state(folder, ae_config, train_config)  # refuses a finished run of other settings
        return load_run(workspace, name)
    with workspace.lock():
        state = _resume_state(folder, ae_config, train_config)
        if state is None:
            model_ids = combined_table(zoos)["model_id"].unique().sort().to_list()
            split = split_models(model_ids, train_config.split, train_config.seed)
        else:
            split = Split(**read_json(folder / "config.json")["split"])
        parts = [prepare(z, split, train_config.align, train_config.align_iterations) for z in zoos]
        torch.manual_seed(train_config.seed)
        generator = torch.Generator(device=device).manual_seed(train_config.seed)
        if kind_of(ae_config) == "sane":
            method = _SANEMethod(parts, ae_config, train_config, generator, device)
            layouts = [part.layout for part in method.parts]
        else:
            method = _HyperRepMethod(parts[0], ae_config, train_config, generator, device)
            layouts = [parts[0].layout]
        config_json = {
            "kind": kind_of(ae_config),
            "ae": ae_config.to_json(),
            "train": asdict(train_config),
            "split": asdict(split),
            "n_tokens": max(layout.n_tokens for layout in layouts),
            "token_width": layouts[0].index.shape[1],
            "architectures": [z.spec.name for z in zoos],
            "zoo_created": zoos[0].manifest.get("zoo", {}).get("created"),
            "status": "training",
        }
        if state is None:
            folder.mkdir(parents=True, exist_ok=True)
            write_tensors(folder / "stats.safetensors", _stats_tensors(parts))
            write_json(folder / "config.json", config_json)
        result = _fit(folder, method, train_config, generator, state, device, on_progress, should_stop)
        write_json(folder / "config.json", {**config_json, "status": "done", "stopped_at_epoch": result})
    finished = load_run(workspace, name)
    from core.rep.embed import compute_embeddings

    if on_progress:
        on_progress(0, 1, {"phase": "map"})
    compute_embeddings(workspace, finished, zoos, device=device)
    if on_progress:
        on_progress(1, 1, {"phase": "map"})
    return finished


def _stats_tensors(parts: list[PreparedZoo]) -> dict[str, torch.Tensor]:
    """Per-layer statistics to store with a run: under plain names for one architecture (as runs always
    stored them), prefixed by the architecture's name for several."""
    if len(parts) == 1:
        return {"layer_mean": parts[0].layer_mean, "layer_std": parts[0].layer_std}
    return {
        f"{p.zoo.spec.name}/{key}": value
        for p in parts
        for key, value in (("layer_mean", p.layer_mean), ("layer_std", p.layer_std))
    }


def _read_stats(path: Path) -> dict[str | None, tuple[torch.Tensor, torch.Tensor]]:
    """{architecture: (layer_mean, layer_std)}; the key None holds a one-architecture run's statistics."""
    tensors = read_tensors(path)
    if "layer_mean" in tensors:
        return {None: (tensors["layer_mean"], tensors["layer_std"])}
    names = {key.rsplit("/", 1)[0] for key in tensors}
    return {name: (tensors[f"{name}/layer_mean"], tensors[f"{name}/layer_std"]) for name in names}


def _resume_state(folder: Path, ae_config: AEConfig | SANEConfig, train_config: TrainConfig) -> dict | None:
    state_path = folder / "train_state.pt"
    if not state_path.exists():
        return None
    config = read_json(folder / "config.json")
    if config["ae"] != ae_config.to_json() or config["train"] != json.loads(json.dumps(asdict(train_config))):
        raise UserError(f"{folder}: a run of that name exists with other settings; choose another --run")
    return torch.load(state_path, map_location="cpu", weights_only=True)


def _fit(folder, method, config: TrainConfig, generator, state, device, on_progress, should_stop) -> int:
    model = method.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = method.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(config.warmup_epochs * steps_per_epoch, config.epochs * steps_per_epoch)
    )
    history: list[dict] = []
    start_epoch, best, best_epoch, best_weights = 1, float("inf"), 0, None
    if state is None:
        method.initialise(model)
    else:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        best_weights, history = state["best_model"], state["history"]
        start_epoch, best, best_epoch = state["epoch"] + 1, state["best"], state["best_epoch"]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    started = time.monotonic()
    epoch = start_epoch - 1
    for epoch in range(start_epoch, config.epochs + 1):
        if epoch - best_epoch > config.patience:
            epoch -= 1
            break
        model.train()
        sums = torch.zeros(3, device=device)
        for batch in method.batches():
            with autocast:
                loss, rec, con = method.losses(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            scheduler.step()
            sums += torch.stack([loss.detach(), rec.detach(), con.detach()]).float()
        val = method.validation_loss(model)
        if not math.isfinite(val):
            raise UserError(f"{folder}: training diverged at epoch {epoch} (validation loss {val}); try a lower --lr")
        if val < best:
            best, best_epoch = val, epoch
            best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        means = (sums / steps_per_epoch).tolist()
        row = {
            "epoch": epoch,
            "loss": means[0],
            "reconstruction": means[1],
            "contrastive": means[2],
            "val_reconstruction": val,
            "lr": scheduler.get_last_lr()[0],
            "elapsed_s": time.monotonic() - started,
        }
        history.append(row)
        _save_state(folder, model, optimizer, scheduler, generator, epoch, best, best_epoch, best_weights, history)
        if on_progress:
            on_progress(epoch, config.epochs, {k: v for k, v in row.items() if k != "epoch"})
        if should_stop and should_stop() and epoch < config.epochs:
            raise Interrupted(f"stopped after epoch {epoch}; run the same command again to resume")
    write_tensors(folder / "model.safetensors", best_weights)
    write_parquet(folder / "history.parquet", pl.DataFrame(history))
    return epoch


def _save_state(folder, model, optimizer, scheduler, generator, epoch, best, best_epoch, best_weights, history):
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "epoch": epoch,
        "best": best,
        "best_epoch": best_epoch,
        "best_model": best_weights,
        "history": history,
    }
    with atomic_path(folder / "train_state.pt") as tmp:
        torch.save(state, tmp)
