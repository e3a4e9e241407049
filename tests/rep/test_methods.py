"""The autoencoder kinds behind one interface: looked up by name or by config, each able to read its zoos."""

import pytest

from core.errors import UserError
from core.rep.autoencoder import AEConfig
from core.rep.methods import KINDS, METHODS, method_for, method_named
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
