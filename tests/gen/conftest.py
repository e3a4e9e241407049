import pytest

from core.gen.anchors import resolve_anchors
from core.rep.run import load_run
from core.zoo.data import load_dataset
from core.zoo.model_zoo import combined_table, load_zoos


@pytest.fixture(scope="module")
def setting(tiny_ae_workspace):
    """The tiny trained workspace's run, prepared zoo, anchors (best half), zoo table and data."""
    run = load_run(tiny_ae_workspace)
    zoos = load_zoos(tiny_ae_workspace)
    table = combined_table(zoos)
    anchors = resolve_anchors(zoos, table, "top:0.5")
    return run, run.prepare(anchors.zoo), anchors, table, load_dataset("digits")
