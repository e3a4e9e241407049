"""Train and evaluate many models of one architecture at once, as if each were trained alone.

Why not torch.func.vmap over the nn.Module: on a 2-core CPU it measured about 3.6x over a plain loop at batch
size 32. Instead the whole population is one set of stacked tensors with a hand-written forward pass
(torch.compile of it was measured slower on CPU, and costs 15-35 s to compile):

* all parameters live in one flat [models, n_params] tensor (views give each layer), so Adam is a handful of
  element-wise ops on one tensor instead of a Python loop over models and layers;
* activations are [batch, models * channels, H, W], so each convolution of the whole population is one call:
  on the CPU a grouped convolution (groups = models) in channels-last memory, which oneDNN runs well (in NCHW
  3-4x slower); on CUDA unfold + one batched matmul over models, as cuDNN runs a grouped convolution one group
  at a time (core/zoo/backend.py chooses, per device);
* a population larger than the device's memory budget trains and evaluates a chunk of models at a time;
* the linear layers are batched matrix products (`baddbmm`) over models;
* large temporary tensors are kept in glibc's heap instead of page-faulted anew, when the program's entry point
  (the CLI, the app, a bench) calls `core.runtime.tune_cpu_allocator` once.

Each model keeps its own init (`init_vectors`), its own data order (`epoch_orders`) and its own dropout masks
(`dropout_mask`, a counter-based hash of seed and step), so the population is the same as the models
trained one after another; tests/test_population.py checks that against a plain nn.Module loop.

ResNets (`StackedResNet`) add BatchNorm: on the [B, M*C, H, W] layout, normalising each of the M*C channels
over batch and space is exactly each model normalising each of its channels over its own batch, so one
`F.batch_norm` call serves the population. Running statistics live in the flat vector (a zoo checkpoint is a
complete state dict) but are estimated, not trained: Adam and weight decay leave them alone (`trainable_mask`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.errors import ArchitectureError
from core.zoo.arch import ArchSpec, Spec, build_module, flatten, layer_slices, trainable_mask
from core.zoo.backend import CONVS, Backend, backend_for, shared_input_conv
from core.zoo.resnet import ResNetSpec

INITS = ("uniform", "normal", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal")


# ---------------------------------------------------------------- randomness shared by both code paths


# A BatchNorm starts as the identity on normalised inputs, with the running statistics of a unit normal.
_NORM_INIT = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}


def init_vector(spec: Spec, seed: int, scheme: str) -> torch.Tensor:
    """One model's initial weights. Biases are U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as in PyTorch's default;
    BatchNorm layers start at `_NORM_INIT`."""
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")
    generator = torch.Generator().manual_seed(int(seed))
    gain = torch.nn.init.calculate_gain("relu" if spec.activation in ("relu", "leakyrelu", "gelu") else spec.activation)
    parts = []
    for layer in spec.layers:
        if layer.kind == "norm":
            parts += [torch.full(shape, _NORM_INIT[name]) for name, shape, _ in layer.tensors]
            continue
        weight = torch.empty(layer.weight_shape)
        bound = 1.0 / math.sqrt(layer.fan_in)
        if scheme == "uniform":
            weight.uniform_(-bound, bound, generator=generator)
        elif scheme == "normal":
            weight.normal_(0.0, bound, generator=generator)
        elif scheme == "kaiming_uniform":
            torch.nn.init.kaiming_uniform_(weight, nonlinearity="relu", generator=generator)
        elif scheme == "kaiming_normal":
            torch.nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator)
        elif scheme == "xavier_uniform":
            torch.nn.init.xavier_uniform_(weight, gain=gain, generator=generator)
        else:
            torch.nn.init.xavier_normal_(weight, gain=gain, generator=generator)
        parts.append(weight.reshape(-1))
        if layer.bias_shape is not None:
            parts.append(torch.empty(layer.bias_shape).uniform_(-bound, bound, generator=generator))
    return torch.cat(parts)


def init_vectors(spec: Spec, seeds: list[int], schemes: list[str]) -> torch.Tensor:
    return torch.stack([init_vector(spec, s, i) for s, i in zip(seeds, schemes)])


_MASK32 = 0xFFFFFFFF
ORDER_BLOCK_ENTRIES = 1 << 24  # (model, image) keys hashed at once by `epoch_orders`: 128 MB per int64 temporary


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 integer hash on int64 tensors holding 32-bit values (wrap-around products keep the low bits)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def epoch_orders(seeds: torch.Tensor, epoch: int, n: int) -> torch.Tensor:
    """[models, n]: the order in which each model (of `seeds` [models]) sees the n training images in one epoch
    (1-based), computed where `seeds` lives. Each model's images are sorted by a hash of (seed, epoch, image):
    the hash is a bijection of 32-bit values, so the keys of one model never tie, and the arithmetic is exact, so
    the CPU and CUDA give the same orders. (Drawn with numpy per model until 2026-11, the host spent 0.83 s per
    epoch of 16,384 models on it while an H200 waited; on the device it is one sort.)"""
    images = torch.arange(n, dtype=torch.int64, device=seeds.device)
    rows = max(1, ORDER_BLOCK_ENTRIES // max(1, n))  # models per block, so the hashing's temporaries stay bounded
    blocks = []
    for block in seeds.split(rows):
        key = (block.to(torch.int64) * 0x2545F491 + epoch * 0x9E3779B1 + 0x68E31DA4) & _MASK32
        blocks.append(torch.argsort(_hash32(_hash32(_hash32(key)).view(-1, 1) ^ images), dim=1))
    return torch.cat(blocks)


def dropout_mask(seeds: torch.Tensor, step: int, slot: int, shape: tuple[int, ...], rate: torch.Tensor) -> torch.Tensor:
    """Inverted-dropout multipliers [models, *shape] that depend only on (seed, step, slot, element)."""
    key = (seeds.to(torch.int64) * 0x9E3779B1 + step * 0x85EBCA77 + slot * 0xC2B2AE3D) & _MASK32
    key = _hash32(key).view(-1, *([1] * len(shape)))
    counter = torch.arange(math.prod(shape), dtype=torch.int64, device=seeds.device).view(shape)
    uniform = _hash32(key ^ counter).to(torch.float32) * (1.0 / 2**32)
    keep = (1.0 - rate).view(-1, *([1] * len(shape)))
    return (uniform < keep).to(torch.float32) / keep.clamp_min(1e-6)


# ---------------------------------------------------------------- the stacked forward pass

_ACT = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu, "leakyrelu": F.leaky_relu}
_BN_EPS = 1e-5  # nn.BatchNorm2d's


@dataclass
class StackedNet:
    """The functional, population-wide forward pass of an ArchSpec.

    Activations are [B, M*C, H, W] tensors, so every convolution of the population is one call of the
    formulation `conv` (core/zoo/backend.py: a grouped convolution in channels-last memory on the CPU, unfold +
    bmm on CUDA). Position b of the batch holds a different image for each model when the models train on their
    own batches.
    """

    spec: ArchSpec
    conv: str = "grouped"

    def __post_init__(self) -> None:
        self.slices = layer_slices(self.spec)
        self.act = _ACT[self.spec.activation]
        self.formulation = CONVS[self.conv]

    def layer_params(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each layer's columns of `params` [M, P], split in one call. Its backward writes the gradient of `params`
        once; a slice per layer made each layer's backward fill a zero tensor the size of all of `params` and add
        them up (for decoded weights of large models, most of a behavioural-loss step's time)."""
        return params.split([piece.stop - piece.start for piece in self.slices], dim=1)

    def batch_input(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Per-model batches [B, M*C, H, W] from images [N, C, H, W] and indices [M, B], in the memory layout of
        the convolution formulation."""
        models, batch = index.shape
        channels, height, width = x.shape[1:]
        picked = x[index.T.reshape(-1)].view(batch, models * channels, height, width)
        return picked.contiguous(memory_format=self.formulation.memory_format)

    def _weights(self, spans: tuple[torch.Tensor, ...], index: int) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.spec.layers[index]
        n_weight = math.prod(layer.weight_shape)
        weight, bias = spans[index].split([n_weight, layer.n_params - n_weight], dim=1)
        return weight.reshape(-1, *layer.weight_shape), bias

    def forward(
        self,
        params: torch.Tensor,
        x: torch.Tensor,
        dropout: tuple[torch.Tensor, torch.Tensor, int] | None = None,
        shared: bool = False,
    ) -> torch.Tensor:
        """Logits [M, B, classes] for per-model batches `x` from `batch_input`, or with `shared` for one batch of
        images [B, C, H, W] that every model sees (evaluation, the behavioural loss's queries): its first
        convolution is then one matrix product (core/zoo/backend.py `shared_input_conv`), the same figures.

        `dropout` = (seeds, rates, step) switches dropout on.
        """
        models = params.shape[0]
        batch = x.shape[0]
        spans = self.layer_params(params)
        if shared and not self.spec.convs:
            x = self.batch_input(x, torch.arange(batch, device=x.device).expand(models, -1))
        for index, conv in enumerate(self.spec.convs):
            weight, bias = self._weights(spans, index)
            if shared and index == 0:
                x = shared_input_conv(x, weight, bias, conv.padding, self.formulation.memory_format)
            else:
                x = self.formulation.run(x, weight, bias, 1, conv.padding)
            if conv.pool > 1:
                x = F.max_pool2d(x, conv.pool)
            x = self.act(x)
            if dropout is not None:
                channels, height, width = x.shape[1] // models, x.shape[2], x.shape[3]
                mask = self._mask(dropout, index, (batch, height, width, channels))  # [M, B, H, W, C]
                mask = mask.permute(1, 2, 3, 0, 4).reshape(batch, height, width, -1).permute(0, 3, 1, 2)
                x = x * mask
        # To per-model features in (h, w, c) order; the first linear weight is permuted to read them.
        channels, height, width = self.spec.feature_shapes()[-1]
        h = x.permute(0, 2, 3, 1).reshape(batch, height, width, models, channels)
        h = h.permute(3, 0, 1, 2, 4).reshape(models, batch, -1)
        n_conv = len(self.spec.convs)
        for index in range(n_conv, len(self.spec.layers)):
            weight, bias = self._weights(spans, index)
            if index == n_conv:
                weight = weight.reshape(models, -1, channels, height, width).permute(0, 1, 3, 4, 2)
                weight = weight.reshape(models, -1, channels * height * width)
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if index < len(self.spec.layers) - 1:
                h = self.act(h)
                if dropout is not None:
                    h = h * self._mask(dropout, index, tuple(h.shape[1:]))
        return h

    def train_forward(
        self, params: torch.Tensor, x: torch.Tensor, dropout=None, momentum: float = 0.1
    ) -> tuple[torch.Tensor, list[tuple[slice, torch.Tensor]]]:
        """Logits in training mode, and the running statistics to store [(span, values [M, span])]: none here."""
        return self.forward(params, x, dropout), []

    def _mask(self, dropout, slot: int, shape: tuple[int, ...]) -> torch.Tensor:
        seeds, rates, step = dropout
        return dropout_mask(seeds, step, slot, shape, rates)


class StackedResNet(StackedNet):
    """The population-wide forward pass of a ResNetSpec, in the layout of StackedNet.

    `forward` is evaluation mode (BatchNorm with the running statistics); `train_forward` normalises with
    each model's batch statistics and returns the running statistics updated as nn.BatchNorm2d would."""

    spec: ResNetSpec

    def __post_init__(self) -> None:
        super().__post_init__()
        self.span = {layer.key: span for layer, span in zip(self.spec.layers, self.slices)}
        self.shape = {layer.key: layer.weight_shape for layer in self.spec.layers}

    def forward(self, params: torch.Tensor, x: torch.Tensor, dropout=None, shared: bool = False) -> torch.Tensor:
        if shared:  # one batch for every model: copied per model (its stem is normalised, not a plain convolution)
            x = self.batch_input(x, torch.arange(x.shape[0], device=x.device).expand(params.shape[0], -1))
        return self._run(params, x, None, 0.0)

    def train_forward(
        self, params: torch.Tensor, x: torch.Tensor, dropout=None, momentum: float = 0.1
    ) -> tuple[torch.Tensor, list[tuple[slice, torch.Tensor]]]:
        if dropout is not None:
            raise ArchitectureError(f"{self.spec.name}: ResNets have no dropout")
        updates: list[tuple[slice, torch.Tensor]] = []
        return self._run(params, x, updates, momentum), updates

    def _run(self, params, x, updates: list | None, momentum: float) -> torch.Tensor:
        spans = dict(zip(self.span, self.layer_params(params)))

        def conv_norm(x: torch.Tensor, conv: str, norm: str, stride: int = 1) -> torch.Tensor:
            return self._norm(spans, self._conv(spans, x, conv, stride), norm, updates, momentum)

        x = self.act(conv_norm(x, "conv1", "bn1"))
        for block in self.spec.block_plan():
            key = block.key
            out = self.act(conv_norm(x, f"{key}.conv1", f"{key}.bn1", block.stride))
            out = conv_norm(out, f"{key}.conv2", f"{key}.bn2")
            if block.has_shortcut_conv:
                x = conv_norm(x, f"{key}.downsample.0", f"{key}.downsample.1", block.stride)
            x = self.act(out + x)
        models, batch = params.shape[0], x.shape[0]
        features = x.mean((2, 3)).view(batch, models, -1).transpose(0, 1)  # [M, B, C]
        classes, width = self.shape["fc"]
        weight, bias = spans["fc"].split([classes * width, classes], dim=1)
        weight = weight.view(models, classes, width)
        return torch.baddbmm(bias.unsqueeze(1), features, weight.transpose(1, 2))

    def _conv(self, spans: dict[str, torch.Tensor], x: torch.Tensor, key: str, stride: int) -> torch.Tensor:
        shape = self.shape[key]
        weight = spans[key].view(spans[key].shape[0], *shape)
        return self.formulation.run(x, weight, None, stride, shape[-1] // 2)

    def _norm(self, spans: dict[str, torch.Tensor], x, key: str, updates: list | None, momentum: float):
        span, channels, models = self.span[key], self.shape[key][0], spans[key].shape[0]
        weight, bias, mean, var = spans[key].view(models, 4, channels).unbind(1)
        # Copies, not views: a chunk of one model starts at any float offset of the flat vector, and cuDNN's batch
        # norm failed on such pointers ("misaligned address" on an H200, a ResNet population one model per chunk).
        weight, bias = _standalone(weight), _standalone(bias)
        if updates is None and (mean.requires_grad or var.requires_grad):
            # Running statistics that carry gradients (decoded weights, core/rep/behaviour.py): F.batch_norm does
            # not differentiate through them, so the same evaluation-mode formula is written out.
            shape = (1, -1, 1, 1)
            scale = weight.view(shape) / (var.reshape(shape) + _BN_EPS).sqrt()
            return (x - mean.reshape(shape)) * scale + bias.view(shape)
        if updates is None:
            return F.batch_norm(x, _standalone(mean), _standalone(var), weight, bias, training=False, eps=_BN_EPS)
        # F.batch_norm updates these copies in place (unbiased batch variance, PyTorch's momentum rule).
        running_mean, running_var = mean.detach().clone().reshape(-1), var.detach().clone().reshape(-1)
        out = F.batch_norm(x, running_mean, running_var, weight, bias, training=True, momentum=momentum)
        stats = torch.stack([running_mean, running_var]).view(2, -1, channels).transpose(0, 1)
        updates.append((slice(span.start + 2 * channels, span.stop), stats.reshape(models, -1)))
        return out


def _standalone(rows: torch.Tensor) -> torch.Tensor:
    """[M, C] -> [M*C] in memory of its own (the allocator's alignment), keeping the autograd graph."""
    return rows.reshape(-1).clone(memory_format=torch.contiguous_format)


def stacked_net(spec: Spec, conv: str = "grouped") -> StackedNet:
    return StackedResNet(spec, conv) if spec.family == "resnet" else StackedNet(spec, conv)


# ---------------------------------------------------------------- the population trainer


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-model mean cross-entropy [M] for logits [M, B, K] and labels [M, B] (or shared [B])."""
    models, batch, classes = logits.shape
    if labels.dim() == 1:
        labels = labels.expand(models, batch)
    return (
        F.cross_entropy(logits.reshape(-1, classes), labels.reshape(-1), reduction="none").view(models, batch).mean(1)
    )


@torch.no_grad()
def _store(params: torch.Tensor, running: list[tuple[slice, torch.Tensor]]) -> None:
    for span, values in running:
        params[:, span] = values


def step_bytes_per_image(net: StackedNet, dropout: bool, batch: int = 8) -> int:
    """Bytes one model's training step keeps for its backward pass, per image: what decides how many models fit
    in one pass. Measured, not modelled, by running the step of one model on `batch` zero images on the CPU
    in the net's formulation and adding up the distinct tensors autograd saves (the unfold formulation saves its
    patches, k*k times the input). Evaluation keeps less, so the figure bounds it too."""
    spec = net.spec
    params = torch.zeros(1, spec.n_params, requires_grad=True)
    x = torch.zeros(batch, spec.in_channels, spec.in_size, spec.in_size)
    index = torch.arange(batch).unsqueeze(0)
    masks = (torch.zeros(1, dtype=torch.int64), torch.full((1,), 0.5), 1) if dropout else None
    saved: dict[int, int] = {}
    # Every saved tensor stays alive until the measurement ends, here and not in the graph: a tensor freed early
    # would let a later one take its memory (the same data_ptr), and the figure would miss one of them (measured:
    # cnn-l with dropout read 116,195 bytes an image where 199,715 are saved).
    alive = []

    def pack(tensor: torch.Tensor) -> int:
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        alive.append(tensor)
        # Not the tensor: a node saving its own output would then hold it, and the output its node, a cycle that
        # Python's collector cannot see, so every call leaked its graph (its model's zero parameters among it: 45 MB
        # a call for a ResNet-18). There is no backward pass to unpack for.
        return storage.nbytes()

    # With grad on whatever the caller's mode: under no_grad autograd saves nothing, the figure read 0 and every
    # population built there (the zoo's error sets, evaluate_models) ran all its models in one pass.
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda packed: packed):
        logits, _ = net.train_forward(params, net.batch_input(x, index), masks)
        _cross_entropy(logits, torch.zeros(batch, dtype=torch.int64)).sum()
    alive.clear()  # the graph keeps `pack`, and with it this list: emptied, it holds none of the graph's tensors
    return math.ceil(sum(saved.values()) / batch)


class Population:
    """Stacked parameters, Adam state and per-model hyper-parameters of many models of one architecture.

    `backend` (default: `backend_for(device)`) decides the convolution formulation and how many models one pass
    holds; a population too large for it trains and evaluates a chunk of models at a time."""

    def __init__(
        self,
        spec: Spec,
        params: torch.Tensor,
        seeds: list[int],
        lr: list[float],
        weight_decay: list[float],
        dropout: list[float],
        device: str = "cpu",
        backend: Backend | None = None,
    ):
        if spec.family != "cnn" and any(rate > 0 for rate in dropout):
            raise ArchitectureError(f"{spec.name}: dropout is available for the CNN family only, not for ResNets")
        self.spec, self.device = spec, device
        self.params = params.to(device=device, dtype=torch.float32).clone()
        # 1 where Adam and weight decay act, 0 on BatchNorm running statistics.
        self.trainable = trainable_mask(spec).to(device=device, dtype=torch.float32)
        self.seeds = torch.tensor(seeds, dtype=torch.int64, device=device)
        self.lr = torch.tensor(lr, dtype=torch.float32, device=device).unsqueeze(1)
        self.weight_decay = torch.tensor(weight_decay, dtype=torch.float32, device=device).unsqueeze(1)
        self.dropout = torch.tensor(dropout, dtype=torch.float32, device=device)
        self.exp_avg = torch.zeros_like(self.params)
        self.exp_avg_sq = torch.zeros_like(self.params)
        self.step = 0
        self.backend = backend or backend_for(device)  # after the state above, so free memory excludes it
        self.net = stacked_net(spec, self.backend.conv)
        self.bytes_per_model_image = step_bytes_per_image(self.net, bool((self.dropout > 0).any()))

    @property
    def size(self) -> int:
        return self.params.shape[0]

    def model_chunks(self, images: int) -> list[slice]:
        """The slices of models that one pass over `images` images per model takes at a time."""
        return self.backend.model_chunks(self.size, images, self.bytes_per_model_image)

    def train_epoch(self, x: torch.Tensor, y: torch.Tensor, epoch: int, batch_size: int) -> torch.Tensor:
        """One epoch for every model, each in its own order; returns the per-model mean training loss."""
        x, labels = x.to(self.device), y.to(self.device)
        n = x.shape[0]
        order = epoch_orders(self.seeds, epoch, n)
        use_dropout = bool((self.dropout > 0).any())
        chunks = self.model_chunks(batch_size)
        total = torch.zeros(self.size, device=self.device)
        steps = 0
        for start in range(0, n, batch_size):
            self.step += 1
            for rows in chunks:
                total[rows] += self._train_step(x, labels, order[rows, start : start + batch_size], rows, use_dropout)
            steps += 1
        return total / steps

    def _train_step(self, x, labels, index: torch.Tensor, rows: slice, use_dropout: bool) -> torch.Tensor:
        """One step of the models in `rows` on their batches `index` [rows, B]; returns their losses."""
        params = self.params[rows].detach().requires_grad_(True)
        dropout = (self.seeds[rows], self.dropout[rows], self.step) if use_dropout else None
        logits, running = self.net.train_forward(params, self.net.batch_input(x, index), dropout)
        losses = _cross_entropy(logits, labels[index])
        grad = torch.autograd.grad(losses.sum(), params)[0]
        self._adam(grad, rows)
        _store(self.params[rows], running)
        return losses.detach()

    @torch.no_grad()
    def _adam(self, grad: torch.Tensor, rows: slice, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        """torch.optim.Adam's update (L2 weight decay added to the gradient) of the models in `rows`, per-model lr
        and decay; entries outside the trainable mask keep zero moments, so they do not move."""
        params, exp_avg, exp_avg_sq = self.params[rows], self.exp_avg[rows], self.exp_avg_sq[rows]
        grad = grad.add(params * self.weight_decay[rows]).mul_(self.trainable)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias1 = 1 - beta1**self.step
        bias2 = 1 - beta2**self.step
        denom = (exp_avg_sq.sqrt() / math.sqrt(bias2)).add_(eps)
        params.addcdiv_(exp_avg * (self.lr[rows] / bias1), denom, value=-1.0)

    def _passes(self, x: torch.Tensor, chunk: int | None):
        """(models, images, logits [models, images, classes]) over every chunk of models and of images: each model
        sees the same images (`forward`'s shared batch: one first convolution for all), `chunk` images at a time
        (default: the backend's choice, small on the CPU, as many as fit on CUDA)."""
        x = x.to(self.device)
        chunk = chunk or self.backend.images_per_pass(self.size, x.shape[0], self.bytes_per_model_image)
        for rows in self.model_chunks(chunk):
            params = self.params[rows]
            for start in range(0, x.shape[0], chunk):
                stop = min(start + chunk, x.shape[0])
                yield rows, slice(start, stop), self.net.forward(params, x[start:stop], shared=True)

    @torch.no_grad()
    def evaluate(
        self, x: torch.Tensor, y: torch.Tensor, chunk: int | None = None, classes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-model mean loss and accuracy [M] on one shared dataset. `classes` (int16 [M, images], on the CPU),
        where given, is filled with the class each model predicts for each image: the novelty figures need them,
        and taking them here spares a second pass over the images."""
        labels = y.to(self.device)
        loss_sum = torch.zeros(self.size, device=self.device)
        correct = torch.zeros(self.size, device=self.device)
        for rows, images, logits in self._passes(x, chunk):
            part, predicted = labels[images], logits.argmax(-1)
            loss_sum[rows] += _cross_entropy(logits, part) * part.shape[0]
            correct[rows] += (predicted == part).sum(1)
            if classes is not None:
                classes[rows, images] = predicted.to(torch.int16).cpu()
        return (loss_sum / x.shape[0]).cpu(), (correct / x.shape[0]).cpu()

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Each model's softmax probabilities [M, images, classes] on one shared dataset (float32, on the CPU): what
        an ensemble averages."""
        out = torch.empty(self.size, x.shape[0], self.spec.n_classes)
        for rows, images, logits in self._passes(x, chunk):
            out[rows, images] = torch.softmax(logits, -1).cpu()
        return out

    def weights(self) -> torch.Tensor:
        return self.params.detach().cpu().clone()

    def state(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume: parameters, Adam moments and the step counter."""
        return {
            "params": self.weights(),
            "exp_avg": self.exp_avg.cpu().clone(),
            "exp_avg_sq": self.exp_avg_sq.cpu().clone(),
            "step": torch.tensor(self.step),
        }

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.params.copy_(state["params"])
            self.exp_avg.copy_(state["exp_avg"])
            self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.step = int(state["step"])


# ---------------------------------------------------------------- the reference: one model at a time


def train_single(
    spec: Spec,
    vector: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    device: str = "cpu",
) -> torch.Tensor:
    """The plain loop the papers' zoo code uses: one nn.Module in training mode (BatchNorm on batch statistics,
    updating its running statistics), torch.optim.Adam, one batch at a time."""
    model = build_module(spec, vector).train().to(device)
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for epoch in range(1, epochs + 1):
        order = epoch_orders(torch.tensor([seed], device=device), epoch, x.shape[0])[0]
        for start in range(0, x.shape[0], batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    return flatten(spec, model.state_dict()).cpu()


def evaluate_models(
    spec: Spec, vectors: torch.Tensor, x: torch.Tensor, y: torch.Tensor, activations: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and accuracy [N] of N flat weight vectors, evaluated together (one population per activation)."""
    activations = activations or [spec.activation] * len(vectors)
    loss, acc = torch.empty(len(vectors)), torch.empty(len(vectors))
    for activation in sorted(set(activations)):
        rows = torch.tensor([i for i, a in enumerate(activations) if a == activation])
        n = len(rows)
        population = Population(
            spec.with_activation(activation), vectors[rows], [0] * n, [0.0] * n, [0.0] * n, [0.0] * n
        )
        loss[rows], acc[rows] = population.evaluate(x, y)
    return loss, acc


def model_probabilities(spec: Spec, vectors: torch.Tensor, x: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """Softmax probabilities [N, images, classes] of N flat weight vectors of one activation, evaluated together."""
    n = len(vectors)
    population = Population(spec, vectors, [0] * n, [0.0] * n, [0.0] * n, [0.0] * n, device)
    return population.probabilities(x)


@torch.no_grad()
def recalibrate_norm_statistics(
    spec: Spec, vectors: torch.Tensor, x: torch.Tensor, batch_size: int = 64, batches: int | None = None
) -> torch.Tensor:
    """`vectors` [N, n_params] with their BatchNorm running statistics re-estimated on images `x` (the first
    `batches` batches of `batch_size`, all of `x` by default; every model sees the same ones); unchanged for
    specs without BatchNorm.

    Why: weights decoded from an autoencoder carry running statistics that need not fit their own weights
    (SANE re-estimates them before evaluating generated models). The estimate is PyTorch's cumulative average
    (BatchNorm with momentum=None after `reset_running_stats`): forward passes in training mode, batch k
    weighted 1/k, no weight update."""
    if bool(trainable_mask(spec).all()):
        return vectors
    params = vectors.detach().to(torch.float32).clone()
    for layer, span in zip(spec.layers, layer_slices(spec)):
        if layer.kind == "norm":  # reset, so the first batch's factor of 1 leaves nothing of the old values
            channels = layer.weight_shape[0]
            params[:, span.start + 2 * channels : span.stop] = torch.cat([torch.zeros(channels), torch.ones(channels)])
    net = stacked_net(spec)
    starts = list(range(0, x.shape[0], batch_size))[:batches]
    for count, start in enumerate(starts, start=1):
        index = torch.arange(start, min(start + batch_size, x.shape[0])).expand(len(params), -1)
        _, running = net.train_forward(params, net.batch_input(x, index), momentum=1.0 / count)
        _store(params, running)
    return params
