"""Both convolution formulations train the same models, and a population split into chunks trains and evaluates
as it does in one piece: the CPU proves here what the GPU's backend relies on. HYPERREP_TEST_DEVICE=cuda runs
the training comparisons on a GPU (bench/gpu.py's device check); CI has none."""

import gc
import os

import pytest
import torch
import torch.nn.functional as F

from core.zoo.arch import ArchSpec, Conv, cnn_small
from core.zoo.backend import Backend, backend_for, grouped_conv, image_patches, shared_input_conv, unfolded_conv
from core.zoo.data import load_dataset
from core.zoo.families import arch_by_name
from core.zoo.population import Population, epoch_orders, init_vectors, stacked_net, step_bytes_per_image
from core.zoo.resnet import resnet

# Tanh, a pooled map with a remainder to crop (11 -> 5), a padded conv, dropout slots, two hidden layers.
ODD = ArchSpec("odd", 1, 13, (Conv(4, 3, pool=2), Conv(3, 2, padding=1)), (9, 7), 5, "tanh", dropout_slots=True)
# Strided 3x3 convs with padding, a 1x1 strided shortcut conv, BatchNorm after every conv.
SMALL_RESNET = resnet(widths=(4, 8), blocks=(1, 1))
ONE_MODEL_PER_CHUNK = 1  # bytes: less than any model needs, so every chunk holds one model
DEVICE = os.environ.get("HYPERREP_TEST_DEVICE", "cpu")
if DEVICE.startswith("cuda"):
    torch.backends.cudnn.allow_tf32 = False  # cuDNN's grouped convolutions default to TF32; compare in float32


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return data.x_train[:96], data.y_train[:96], data.x_test[:100], data.y_test[:100]


def _trained(spec, dropouts, data, backend: Backend, epochs: int = 2, batch_size: int = 16) -> Population:
    x, y = data
    seeds = list(range(3, 3 + len(dropouts)))
    inits = ["kaiming_uniform", "xavier_normal", "uniform"][: len(dropouts)]
    params, n = init_vectors(spec, seeds, inits), len(seeds)
    lrs, decays = [3e-3, 1e-2, 5e-3][:n], [0.0, 1e-3, 1e-2][:n]
    population = Population(spec, params, seeds, lrs, decays, dropouts, DEVICE, backend)
    for epoch in range(1, epochs + 1):
        population.train_epoch(x, y, epoch, batch_size)
    assert (population.weights() - params).abs().max() > 1e-2  # the models really trained
    return population


def _odd_data():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(40, 1, 13, 13, generator=generator), torch.randint(0, 5, (40,), generator=generator)


@pytest.mark.parametrize("case", ["cnn-dropout", "odd-dropout", "resnet-batchnorm"])
def test_unfold_and_grouped_formulations_train_the_same_models(case, digits):
    spec, dropouts, data = {
        "cnn-dropout": (cnn_small(), [0.0, 0.3, 0.5], digits[:2]),
        "odd-dropout": (ODD, [0.2, 0.0, 0.4], _odd_data()),
        "resnet-batchnorm": (SMALL_RESNET, [0.0, 0.0, 0.0], digits[:2]),
    }[case]
    grouped = _trained(spec, dropouts, data, Backend("grouped"))
    unfolded = _trained(spec, dropouts, data, Backend("unfold"))
    assert grouped.net.formulation.run is grouped_conv and unfolded.net.formulation.run is unfolded_conv
    torch.testing.assert_close(unfolded.weights(), grouped.weights(), atol=1e-5, rtol=0)
    x_test, y_test = digits[2:] if spec.in_size == 8 else _odd_data()
    for a, b in zip(unfolded.evaluate(x_test, y_test), grouped.evaluate(x_test, y_test)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("stride, padding, bias", [(1, 0, True), (1, 1, True), (2, 1, False), (2, 0, False)])
def test_unfolded_conv_computes_the_grouped_convolution_and_its_gradients(stride, padding, bias):
    generator = torch.Generator().manual_seed(stride * 10 + padding)
    models, channels, out, kernel = 3, 2, 4, 3
    x = torch.randn(5, models * channels, 9, 7, generator=generator).requires_grad_(True)
    weight = torch.randn(models, out, channels, kernel, kernel, generator=generator).requires_grad_(True)
    b = torch.randn(models, out, generator=generator).requires_grad_(True) if bias else None
    results = []
    for conv, layout in ((grouped_conv, torch.channels_last), (unfolded_conv, torch.contiguous_format)):
        y = conv(x.contiguous(memory_format=layout), weight, b, stride, padding)
        inputs = [x, weight] + ([b] if bias else [])
        results.append((y, torch.autograd.grad((y * y).sum(), inputs)))
    (y_grouped, grads_grouped), (y_unfolded, grads_unfolded) = results
    torch.testing.assert_close(y_unfolded, y_grouped, atol=1e-5, rtol=1e-5)
    for a, b_ in zip(grads_unfolded, grads_grouped):
        torch.testing.assert_close(a, b_, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("kernel, padding", [(1, 0), (2, 0), (3, 1), (5, 2)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_image_patches_are_unfolds_rows_in_its_order(kernel, padding, layout):
    images = torch.randn(4, 3, 9, 7, generator=torch.Generator().manual_seed(kernel)).contiguous(memory_format=layout)
    expected = F.unfold(images, kernel, padding=padding).transpose(1, 2).reshape(-1, 3 * kernel * kernel)
    assert torch.equal(image_patches(images, kernel, padding), expected)


@pytest.mark.parametrize("padding, bias", [(0, True), (1, True), (2, False)])
def test_the_shared_input_convolution_is_the_grouped_one_over_copies_with_its_gradients(padding, bias):
    generator = torch.Generator().manual_seed(padding)
    models, channels, out, kernel, batch = 3, 2, 4, 3, 5
    images = torch.randn(batch, channels, 9, 7, generator=generator)
    weight = torch.randn(models, out, channels, kernel, kernel, generator=generator).requires_grad_(True)
    b = torch.randn(models, out, generator=generator).requires_grad_(True) if bias else None
    copies = images.repeat(1, models, 1, 1).contiguous(memory_format=torch.channels_last)  # [B, M*C, H, W]
    grouped = grouped_conv(copies, weight, b, 1, padding)
    shared = shared_input_conv(images, weight, b, padding, torch.channels_last)
    assert shared.shape == grouped.shape and shared.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(shared, grouped, atol=1e-5, rtol=1e-5)
    inputs = [weight] + ([b] if bias else [])
    for a, b_ in zip(torch.autograd.grad((shared**2).sum(), inputs), torch.autograd.grad((grouped**2).sum(), inputs)):
        torch.testing.assert_close(a, b_, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("spec", [ODD, SMALL_RESNET, cnn_small()], ids=["odd", "resnet", "cnn-small"])
@pytest.mark.parametrize("conv", ["grouped", "unfold"])
def test_a_shared_batch_gives_the_logits_of_per_model_copies(spec, conv):
    net = stacked_net(spec, conv)
    generator = torch.Generator().manual_seed(1)
    params = torch.rand(4, spec.n_params, generator=generator) * 0.3  # positive: BatchNorm variances among them
    images = torch.randn(6, spec.in_channels, spec.in_size, spec.in_size, generator=generator)
    copies = net.batch_input(images, torch.arange(6).expand(4, -1))
    torch.testing.assert_close(
        net.forward(params, images, shared=True), net.forward(params, copies), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("spec, dropouts", [(ODD, [0.2, 0.0, 0.4]), (SMALL_RESNET, [0.0, 0.0, 0.0])])
def test_a_small_memory_budget_splits_the_population_and_changes_no_result(spec, dropouts, digits):
    data = _odd_data() if spec is ODD else digits[:2]
    whole = _trained(spec, dropouts, data, Backend())
    chunked = _trained(spec, dropouts, data, Backend(memory_budget=ONE_MODEL_PER_CHUNK))
    assert len(whole.model_chunks(16)) == 1 and len(chunked.model_chunks(16)) == 3
    torch.testing.assert_close(chunked.weights(), whole.weights(), atol=1e-6, rtol=0)
    x_test, y_test = data
    for a, b in zip(chunked.evaluate(x_test, y_test), whole.evaluate(x_test, y_test)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_the_device_draws_the_same_data_orders_as_the_cpu():
    seeds = torch.arange(0, 3000, 7)
    assert torch.equal(epoch_orders(seeds.to(DEVICE), 5, 1437).cpu(), epoch_orders(seeds, 5, 1437))


def test_chunks_cover_every_model_once_within_the_budget():
    backend = Backend(memory_budget=1000)
    chunks = backend.model_chunks(models=10, images=10, bytes_per_model_image=30)  # 3 models fit
    assert [(c.start, c.stop) for c in chunks] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert backend.model_chunks(models=4, images=10, bytes_per_model_image=10**6) == [slice(i, i + 1) for i in range(4)]
    assert Backend(memory_budget=10**9).model_chunks(7, 32, 6000) == [slice(0, 7)]
    # Evaluation: a fixed image count on the CPU; as many images as the budget allows when none is fixed.
    assert Backend(eval_images=64).images_per_pass(models=100, total=50, bytes_per_model_image=10) == 50
    assert Backend(memory_budget=10_000, eval_images=None).images_per_pass(10, 500, 20) == 50
    assert Backend(memory_budget=10, eval_images=None).images_per_pass(10, 500, 20) == 1
    with pytest.raises(ValueError, match="unknown convolution formulation 'winograd'"):
        Backend("winograd")


def test_the_cpu_keeps_grouped_convolutions_and_small_evaluation_passes():
    assert backend_for("cpu") == Backend("grouped")
    assert Population(cnn_small(), init_vectors(cnn_small(), [1], ["uniform"]), [1], [1e-3], [0.0], [0.0]).backend == (
        Backend("grouped")
    )


def test_memory_estimate_counts_what_the_step_keeps():
    spec = cnn_small()
    grouped = step_bytes_per_image(stacked_net(spec, "grouped"), dropout=False)
    first_activation = 8 * 8 * 8 * 4  # the first conv's output, float32, per image: kept for its backward
    assert grouped > first_activation
    # The unfold formulation keeps its patches too (k*k = 9 entries per input entry), and dropout its masks.
    assert step_bytes_per_image(stacked_net(spec, "unfold"), dropout=False) > 2 * grouped
    assert step_bytes_per_image(stacked_net(spec, "grouped"), dropout=True) > grouped


def test_a_population_built_under_no_grad_measures_its_step_as_any_other():
    # Evaluation builds its populations under no_grad, where autograd saves nothing: the figure read 0 there and
    # every such population ran all its models in one pass, past the budget (256 MNIST CNN-s at 288 MB a tensor).
    spec, vectors = cnn_small(), init_vectors(cnn_small(), [1, 2], ["uniform"] * 2)
    expected = step_bytes_per_image(stacked_net(spec, "grouped"), dropout=False)
    with torch.no_grad():
        built_there = Population(spec, vectors, [1, 2], [1e-3] * 2, [0.0] * 2, [0.0] * 2)
    assert built_there.bytes_per_model_image == expected > 0


def test_measuring_the_step_keeps_none_of_its_tensors_alive():
    # Each evaluation measures it; a graph kept alive by a cycle cost a model's parameters per call, and sampling
    # scores its draws a chunk at a time (1,000s of calls for ResNets under a small budget).
    def live_tensors() -> int:
        gc.collect()
        return sum(1 for thing in gc.get_objects() if issubclass(type(thing), torch.Tensor))

    net = stacked_net(cnn_small(), "grouped")
    step_bytes_per_image(net, dropout=False)  # anything made once per process, made before counting
    before = live_tensors()
    for _ in range(3):
        step_bytes_per_image(net, dropout=False)
    assert live_tensors() == before


def test_a_step_with_dropout_is_measured_to_save_at_least_what_one_without_saves():
    # Dropout saves its masks beside everything else: a smaller figure means a saved tensor went uncounted (one
    # freed early lets a later one take its memory, at the same address). Measured on this 28x28 CNN-s before the
    # tensors were held: 21,625 bytes an image with dropout against 40,593 without.
    net = stacked_net(arch_by_name("cnn-s", (1, 28, 28), 10), "grouped")
    assert step_bytes_per_image(net, dropout=True) > step_bytes_per_image(net, dropout=False) > 0


def test_batch_norm_gets_aligned_memory_when_a_chunk_holds_one_model(digits, monkeypatch):
    """One model's BatchNorm parameters are views at arbitrary float offsets of the flat vector; cuDNN failed on
    such pointers on an H200, so they reach F.batch_norm as copies in aligned memory."""
    seen = []
    batch_norm = F.batch_norm

    def recording(x, mean, var, weight, bias, *args, **kwargs):
        seen.extend(t.data_ptr() % 16 for t in (mean, var, weight, bias))
        return batch_norm(x, mean, var, weight, bias, *args, **kwargs)

    monkeypatch.setattr(F, "batch_norm", recording)
    population = _trained(SMALL_RESNET, [0.0] * 3, digits[:2], Backend(memory_budget=ONE_MODEL_PER_CHUNK), epochs=1)
    population.evaluate(*digits[2:])
    assert seen and set(seen) == {0}
