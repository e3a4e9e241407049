import pytest
import torch

from core.errors import ArchitectureError
from core.zoo.arch import (
    ArchSpec,
    Conv,
    build_module,
    cnn_l,
    cnn_s,
    cnn_small,
    default_arch,
    flatten,
    layer_slices,
    match_state_dict,
    param_names,
    unflatten,
)

ALL_SPECS = [cnn_small(1), cnn_small(3), cnn_s(1), cnn_s(3), cnn_l(3), cnn_l(1)]


def test_parameter_counts_match_the_public_zoos():
    assert cnn_s(1).n_params == 2464
    assert cnn_s(3).n_params == 2864
    assert cnn_l(3).n_params == 10853
    assert cnn_small(1).n_params == 1288
    assert sum(cnn_s(1).param_counts().values()) == 2464


def test_state_dict_keys_follow_the_public_numbering():
    assert [layer.key for layer in cnn_s(1).layers] == [f"module_list.{i}" for i in (0, 3, 6, 9, 11)]
    assert [layer.key for layer in cnn_l(3).layers] == [f"module_list.{i}" for i in (0, 4, 8, 13, 16)]
    for spec in ALL_SPECS:
        module_keys = list(build_module(spec).state_dict())
        assert module_keys == [name for name, _ in param_names(spec)]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: f"{s.name}-{s.in_channels}")
def test_flatten_unflatten_round_trip_is_exact(spec):
    module = build_module(spec)
    vector = flatten(spec, module.state_dict())
    assert vector.shape == (spec.n_params,) and vector.dtype == torch.float32
    rebuilt = build_module(spec, vector)
    for (name, tensor), (_, other) in zip(module.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(tensor, other), name
    assert torch.equal(flatten(spec, unflatten(spec, vector)), vector)
    x = torch.randn(2, spec.in_channels, spec.in_size, spec.in_size)
    assert torch.equal(module(x), rebuilt(x))
    assert module(x).shape == (2, spec.n_classes)


def test_layer_slices_cover_the_vector_in_order():
    spec = cnn_s(1)
    slices = layer_slices(spec)
    assert slices[0].start == 0 and slices[-1].stop == spec.n_params
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    assert [s.stop - s.start for s in slices] == list(spec.param_counts().values())


def test_flatten_rejects_wrong_shapes_and_missing_keys():
    spec = cnn_small(1)
    state = build_module(spec).state_dict()
    state["module_list.0.weight"] = torch.zeros(3, 1, 3, 3)
    with pytest.raises(ArchitectureError, match="module_list.0.weight"):
        flatten(spec, state)
    del state["module_list.0.weight"]
    with pytest.raises(ArchitectureError, match="lacks module_list.0.weight"):
        flatten(spec, state)
    with pytest.raises(ArchitectureError):
        unflatten(spec, torch.zeros(spec.n_params + 1))


def test_default_arch_is_sized_for_the_dataset():
    assert default_arch((1, 8, 8), 10).name == "cnn-small"
    assert default_arch((1, 28, 28), 10).n_params == 2464
    assert default_arch((3, 32, 32), 10).n_params == 10853
    with pytest.raises(ArchitectureError, match="10x10"):
        default_arch((1, 10, 10), 10)


def test_match_state_dict_recognises_architectures():
    candidates = [cnn_small(1), cnn_s(1), cnn_l(3)]
    assert match_state_dict(build_module(cnn_l(3)).state_dict(), candidates) == cnn_l(3)
    assert match_state_dict(build_module(cnn_s(3)).state_dict(), candidates) is None


def test_spec_json_round_trip_and_validation():
    spec = ArchSpec("odd", 2, 13, (Conv(4, 3, pool=2), Conv(3, 2, padding=1)), (7, 5), 4, "gelu", dropout_slots=True)
    assert ArchSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ArchitectureError, match="activation"):
        cnn_small(activation="swish")
    with pytest.raises(ArchitectureError, match="malformed"):
        ArchSpec.from_json({"name": "x"})
