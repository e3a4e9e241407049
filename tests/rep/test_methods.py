"""The autoencoder kinds behind one interface: looked up by name or by config, each able to read its zoos."""

import pytest

from core.errors import UserError
from core.rep.autoencoder import AEConfig
from core.rep.loop import TrainConfig
from core.rep.methods import KINDS, METHODS, method_for, method_named, with_kind_defaults
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
