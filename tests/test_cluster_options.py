"""The cluster options without a cluster: bad addresses and shard counts are one line and exit 2, and asking for a
cluster where ray is not installed says how to install it. Runs whether or not ray is installed."""

import sys
import types

import pytest


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--cluster", "nowhere"], "expected local (start one on this machine), auto"),
        (["--cluster", "ray://host"], "expected local"),
        (["--shards", "2"], "--shards needs --cluster"),
        (["--cluster", "local", "--shards", "0"], "--shards must lie in 1..4096"),
        (["--cluster", "local", "--retries", "-1"], "--retries must lie in 0..100"),
    ],
)
def test_bad_cluster_options_are_one_line(run_cli, tmp_path, options, message):
    result = run_cli("zoo", "generate", "--workspace", tmp_path / "ws", "--models", 4, *options)
    assert result.code == 2 and result.err.strip().splitlines() == [f"error: {result.err.strip()[7:]}"]
    assert message in result.err
    assert not (tmp_path / "ws").exists()


def test_a_cluster_without_ray_installed_says_how_to_install_it(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    result = run_cli("sample", "--workspace", tmp_path / "ws", "--cluster", "local")
    assert result.code == 2 and "pip install -r requirements-cluster.txt" in result.err


def test_an_unreachable_cluster_is_one_line_and_nothing_is_written(run_cli, tmp_path, monkeypatch):
    class Unreachable(types.ModuleType):
        """Ray as a client sees a cluster that does not answer (a real ray:// timeout takes about 35 s)."""

        def is_initialized(self):
            return False

        def init(self, **options):
            raise ConnectionError("ray client connection timeout\nsecond line")

    monkeypatch.setitem(sys.modules, "ray", Unreachable("ray"))
    result = run_cli(
        "zoo", "generate", "--workspace", tmp_path / "ws", "--models", 4, "--cluster", "ray://10.0.0.9:10001"
    )
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: --cluster ray://10.0.0.9:10001: cannot connect to a Ray cluster (ray client connection timeout)"
    ]
    assert not (tmp_path / "ws").exists()
