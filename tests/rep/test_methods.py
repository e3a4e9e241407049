"""The autoencoder kinds behind one interface: looked up by name or by config, each able to read its zoos."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from core.errors import UserError
from core.rep.autoencoder import AEConfig
from core.rep.loop import TrainConfig
from core.rep.methods import KINDS, METHODS, method_for, method_named, with_kind_defaults
from core.rep.prepare import prepare, split_models
from core.rep.run import run_name
from core.rep.sane import SANEConfig
from core.zoo.model_zoo import load_zoos


def test_kinds_are_found_by_name_and_by_their_config():
    assert KINDS == ("hyperrep", "sane")
    for kind, method in METHODS.items():
        assert method_named(kind) is method and method_for(method.config_type()) is method
        assert method.aggregations and method.title
    assert method_for(AEConfig()).kind == "hyperrep" and method_for(SANEConfig()).kind == "sane"
    with pytest.raises(UserError, match="unknown autoencoder kind 'vae'"):
        method_named("vae")


def test_each_kind_says_which_zoos_it_reads(tiny_resnet_workspace, tiny_zoo_workspace):
    resnets, cnns = load_zoos(tiny_resnet_workspace), load_zoos(tiny_zoo_workspace)
    method_named("hyperrep").check_zoos(cnns)
    with pytest.raises(UserError, match="--kind sane"):
        method_named("hyperrep").check_zoos(resnets)
    with pytest.raises(UserError, match="2 architectures"):
        method_named("hyperrep").check_zoos(cnns + resnets)
    method_named("sane").check_zoos(cnns + resnets)


def test_sizes_are_checked():
    with pytest.raises(UserError, match="multiple of the 4 heads"):
        AEConfig(d_model=30, heads=4)
    with pytest.raises(UserError, match="latent_dim 0"):
        AEConfig(latent_dim=0)
    with pytest.raises(UserError, match="multiple of the 4 heads"):
        SANEConfig(d_model=7)


def test_unset_loss_weights_take_the_kinds_defaults_and_given_ones_stay():
    unset = TrainConfig()
    assert unset.structure_weight is None and unset.behaviour_weight is None
    for config in (AEConfig(), SANEConfig()):
        filled = with_kind_defaults(config, unset)
        assert {k: getattr(filled, k) for k in ("structure_weight", "behaviour_weight")} == method_for(
            config
        ).loss_weights
    given = TrainConfig(structure_weight=0.5)
    assert with_kind_defaults(SANEConfig(), given).structure_weight == 0.5
    assert run_name(AEConfig(), unset) == run_name(AEConfig(), with_kind_defaults(AEConfig(), unset))
    with pytest.raises(UserError, match="both 0"):
        TrainConfig(structure_weight=0.0, behaviour_weight=0.0)


class _HostReads(TorchDispatchMode):
    """Counts reads of a tensor's value into Python (`.item()`, `float()`, `int()`, `bool()`): on CUDA each one
    waits for the GPU to finish everything queued before it."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("kind", KINDS)
def test_a_training_step_of_either_kind_reads_nothing_back_to_the_host(kind, tiny_zoo_workspace):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    method = method_named(kind)
    config = method.config_type(d_model=16, heads=2, encoder_layers=1, decoder_layers=1, feedforward=32)
    train = TrainConfig(batch_size=4, permute_probability=0.5, erase_probability=0.5, behaviour_weight=1.0)
    train = with_kind_defaults(config, train)
    parts = [prepare(zoo, split_models(list(range(6)), (0.5, 0.25, 0.25), 0), align=True)]
    trainer = method.trainer(parts, config, train, torch.Generator().manual_seed(0), "cpu")
    model = trainer.build()
    batches = trainer.batches()
    with _HostReads() as reads:
        for batch in batches:
            trainer.losses(model, batch)["loss"].backward()
    assert len(batches) > 1 and reads.count == 0
