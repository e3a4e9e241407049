"""How a population's arithmetic runs on one device: the formulation of its convolutions, and how many models and
images one pass may hold. `backend_for(device)` is the one place where the device decides; everything else reads
the `Backend` it returns (tests and benches pass their own).

Why the convolution depends on the device. Activations are [B, M*C, H, W] for M models (core/zoo/population.py),
so one convolution of the population is a grouped convolution with groups = models:

* on the CPU, oneDNN runs it well in channels-last memory (NCHW was 3-4x slower), and unfold + batched matmul
  is slower (bench/gpu.py --quick on the 2-core CPU: 7.2 against 13.9 model-epochs/s at 256 models, 6.4 against
  26.4 at 1,024);
* on CUDA, cuDNN runs one tiny kernel per group: ten steps of 4,096 models launched 40,960 weight-gradient
  kernels, and 4,096 models trained at 270-300 model-epochs/s on an H100, no faster than 2 CPU cores.
  `F.unfold` + one `bmm` over models ran 4.1x faster at 256 models and 18.6x at 4,096 in a prototype.

Measured on an H200 (bench/gpu.py, cnn-small on digits, batch 32, 2026-11-25): unfold + bmm trains 1,449
model-epochs/s at 256 models, 6,641 at 4,096 and 7,177 at 16,384, against 274 and 346 for grouped convolutions and
12 for the plain nn.Module loop; 16,384 models used 9.6 GB in one chunk. The same run compared:
* TF32 matmuls for the unfold path's `bmm` (`torch.backends.cuda.matmul.allow_tf32`): no gain (1,507, 6,344 and
  7,014 model-epochs/s), so they stay off. cuDNN's own TF32 default (`torch.backends.cudnn.allow_tf32`) moved the
  grouped path's weights beyond the tests' 1e-5 in two epochs there; tests/zoo/test_backend.py turns it off on a GPU.
Measured on the same H200 (2026-11-26), after the data orders moved onto the device (`epoch_orders`, 0.83 s of host
time per epoch of 16,384 models before): 8,670 model-epochs/s at 4,096 models and 9,301 at 16,384 (a 15-epoch
zoo of 16,384 models: 26 s of training).
* `torch.compile` of `StackedNet.train_forward` (dynamic=False): 14,696 model-epochs/s at 4,096 models, but its
  first epoch took 22.4 s (compilation) against 0.92 s: it pays only where eager training would take more than
  about 50 s (a 15-epoch zoo of 4,096 models: 7 s eager, about 26 s compiled; of 16,384: 26 s against about
  39 s), so `zoo generate --compile auto` compiles only where it pays, judged after the first epoch
  (core/zoo/compiling.py). On the CPU it measured slower and took 15-35 s to compile.
Not tried: bf16 autocast of the stacked forward (it would move the weights beyond the tests' tolerance, so it
could only be an option); a CUDA graph of one chunk's step (its shapes are static; the step counter of Adam's bias
correction and the batch indices would have to live in device buffers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Bytes of activations one pass may keep on the CPU. glibc maps every allocation over 32 MB (the largest mmap
# threshold it accepts, core/runtime.py) fresh from the kernel and returns it on free, so a pass whose tensors exceed
# that page-faults and zeroes them on every call. At 64 MB the largest tensor of a CNN's pass stays below it (the
# budget counts every tensor a training step saves). Measured on our 2-core CPU: evaluating 256 cnn-s models on
# 2,000 MNIST images took 25-26 s at 256 MB (3 chunks; 15 s of it system time, 6 million page faults) against
# 16.6 s at 64 MB (11 chunks, none); 32 MB was no faster (more, smaller calls); an epoch of 2,048 cnn-small models
# at batch 32 took 9.4 s at 256 MB and 8.2 s at 64 MB.
CPU_MEMORY_BUDGET = 64 * 2**20
# Share of the GPU's free memory one pass may use for activations; the rest covers what the estimate leaves out
# (gradients in flight during the backward pass, the allocator's rounding, cuBLAS workspaces).
CUDA_MEMORY_SHARE = 0.25
# Images per evaluation pass on the CPU: the first layer's output grows with models x images, and tensors over
# 32 MB are page-faulted anew. On CUDA the memory budget alone decides.
CPU_EVAL_IMAGES = 64


def grouped_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int
) -> torch.Tensor:
    """[B, M*C, H, W] -> [B, M*O, H', W'] with per-model kernels `weight` [M, O, C, k, k] and `bias` [M, O]: one
    grouped convolution (groups = models) in channels-last memory."""
    if weight.shape[-1] == 1 and padding == 0 and stride > 1:
        # A strided 1x1 convolution (a ResNet shortcut) reads every stride-th pixel: take those first and convolve
        # with stride 1, the same sum. Measured on an AMD EPYC (torch 2.13 CPU, oneDNN): the weight gradient of the
        # strided 1x1 grouped convolution came out up to 1% wrong and different from run to run (once a heap
        # corruption), so chunked populations trained other ResNets than whole ones; stride 1 was exact.
        x, stride = x[:, :, ::stride, ::stride], 1
    kernel = weight.reshape(-1, *weight.shape[2:]).contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, kernel, None if bias is None else bias.reshape(-1), stride, padding, groups=weight.shape[0])


def shared_input_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int, memory_format: torch.memory_format
) -> torch.Tensor:
    """What `grouped_conv` gives for per-model copies of one batch, from the batch itself: images [B, C, H, W] that
    every model sees -> [B, M*O, H', W'] (stride 1) with per-model kernels `weight` [M, O, C, k, k]. The images'
    patches (`image_patches`, made once whatever the models) times every model's kernels is one matrix product
    whose [B*H'*W', M*O] result is the output's channels-last layout. Measured on our 2-core CPU (25 CNN-s, 64
    MNIST images, with the pooling and activation; the patches then made by `F.unfold`): 11.8 ms against 24.3 ms
    for copying the images per model and convolving them grouped, where a whole evaluation pass took 36.4 ms."""
    batch, _, height, width = x.shape
    models, out, _, kernel, _ = weight.shape
    rows, cols = height + 2 * padding - kernel + 1, width + 2 * padding - kernel + 1
    patches = image_patches(x, kernel, padding)
    kernels = weight.reshape(models * out, -1).t()
    y = patches @ kernels if bias is None else torch.addmm(bias.reshape(-1), patches, kernels)
    return y.view(batch, rows, cols, models * out).permute(0, 3, 1, 2).contiguous(memory_format=memory_format)


def image_patches(x: torch.Tensor, kernel: int, padding: int) -> torch.Tensor:
    """Every stride-1 patch of images [B, C, H, W] as rows [B*H'*W', C*k*k], in `F.unfold`'s order (channel, then
    kernel row and column; patches by output row, then column). Read as a strided view of the padded images and
    copied once: on the CPU this was 10x faster than `F.unfold` (64 MNIST images, 5x5 kernel: 0.57 ms against
    5.4 ms), whose im2col was a quarter of bench/paper.py's generation time."""
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
    channels = x.shape[1]
    windows = x.unfold(2, kernel, 1).unfold(3, kernel, 1)  # [B, C, H', W', k, k], no copy
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels * kernel * kernel)


def unfolded_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int
) -> torch.Tensor:
    """The same as `grouped_conv`, as im2col (`F.unfold`) and one batched matrix product over models, in NCHW
    memory (CUDA's im2col reads contiguous NCHW)."""
    batch, _, height, width = x.shape
    models, out, channels, kernel, _ = weight.shape
    rows = (height + 2 * padding - kernel) // stride + 1
    cols = (width + 2 * padding - kernel) // stride + 1
    patches = F.unfold(x, kernel, padding=padding, stride=stride)  # [B, M*C*k*k, rows*cols]
    patches = patches.view(batch, models, channels * kernel * kernel, -1).permute(1, 0, 3, 2)
    patches = patches.reshape(models, -1, channels * kernel * kernel)  # [M, B*rows*cols, C*k*k]
    kernels = weight.reshape(models, out, -1).transpose(1, 2)  # [M, C*k*k, O]
    y = torch.bmm(patches, kernels) if bias is None else torch.baddbmm(bias.unsqueeze(1), patches, kernels)
    return y.view(models, batch, rows, cols, out).permute(1, 0, 4, 2, 3).reshape(batch, models * out, rows, cols)


@dataclass(frozen=True)
class ConvFormulation:
    run: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, int, int], torch.Tensor]
    memory_format: torch.memory_format  # the layout the activations keep between layers


CONVS = {
    "grouped": ConvFormulation(grouped_conv, torch.channels_last),
    "unfold": ConvFormulation(unfolded_conv, torch.contiguous_format),
}


@dataclass(frozen=True)
class Backend:
    """How a population runs: its convolution formulation (a key of CONVS), the bytes of activations one pass may
    hold (populations that need more are trained and evaluated a chunk of models at a time; models are
    independent, so the result is the same), and the images per evaluation pass (None: as many as fit)."""

    conv: str = "grouped"
    memory_budget: int = CPU_MEMORY_BUDGET
    eval_images: int | None = CPU_EVAL_IMAGES

    def __post_init__(self) -> None:
        if self.conv not in CONVS:
            raise ValueError(f"unknown convolution formulation {self.conv!r}; choose one of {', '.join(CONVS)}")
        if self.memory_budget < 1 or (self.eval_images is not None and self.eval_images < 1):
            raise ValueError("a backend needs a positive memory budget and, if given, positive evaluation images")

    def model_chunks(self, models: int, images: int, bytes_per_model_image: int) -> list[slice]:
        """Equal slices of the models such that each pass over `images` images stays within the budget (at
        least one model per slice)."""
        fits = max(1, self.memory_budget // max(1, images * bytes_per_model_image))
        count = math.ceil(models / fits)
        size = math.ceil(models / count)
        return [slice(start, min(start + size, models)) for start in range(0, models, size)]

    def images_per_pass(self, models: int, total: int, bytes_per_model_image: int) -> int:
        """Images per evaluation pass for `models` models sharing `total` images."""
        if self.eval_images is not None:
            return min(self.eval_images, total)
        return max(1, min(total, self.memory_budget // max(1, models * bytes_per_model_image)))


def backend_for(device: str) -> Backend:
    """The backend the device's kind measured fastest with: grouped convolutions and a fixed budget on the CPU,
    unfold + bmm and a share of the free memory on CUDA (memory the caching allocator holds but does not use
    counts as free)."""
    if torch.device(device).type != "cuda":
        return Backend()
    free, _ = torch.cuda.mem_get_info(device)
    idle = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return Backend("unfold", int((free + idle) * CUDA_MEMORY_SHARE), None)
