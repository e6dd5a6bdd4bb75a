"""The elastic supernet reproduces the dense model exactly; checkpoints round-trip safely."""

import pytest
import torch

from benchmark.model import GPT
from benchmark.spaces import ArchitectureError, get_space
from benchmark.supernet.elastic import CheckpointError, Supernet, load_supernet, save_supernet

T = get_space("t")


@pytest.fixture(scope="module")
def net():
    n = Supernet("t", vocab_size=300).init_weights(0).eval()
    with torch.no_grad():  # non-zero biases, so that switching them off matters
        for p in n.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    return n


@pytest.mark.parametrize("seed", range(8))
def test_sliced_supernet_equals_dense_model(net, seed):
    arch = T.sample(seed)
    x = torch.randint(0, 300, (2, 33), generator=torch.Generator().manual_seed(seed))
    dense = net.extract_dense(arch)
    assert isinstance(dense, GPT)
    assert sum(p.numel() for p in dense.parameters()) == sum(v.numel() for v in net.sub_state_dict(arch).values())
    with torch.no_grad():
        torch.testing.assert_close(net(x, arch), dense(x), rtol=1e-5, atol=1e-5)


def test_extremes_and_bias_matter(net):
    x = torch.randint(0, 300, (1, 16))
    with torch.no_grad():
        for arch in (T.largest(), T.smallest()):
            torch.testing.assert_close(net(x, arch), net.extract_dense(arch)(x), rtol=1e-5, atol=1e-5)
        a = T.sample(3)
        assert not torch.allclose(net(x, a.replace(bias=True)), net(x, a.replace(bias=False)))


def test_wrong_space_rejected(net):
    with pytest.raises(ArchitectureError, match="space"):
        net(torch.zeros(1, 4, dtype=torch.long), get_space("s").smallest())


def test_checkpoint_round_trip_and_errors(net, tmp_path):
    path = tmp_path / "supernet.safetensors"
    save_supernet(net, path, dtype=torch.float32, step="7")
    loaded = load_supernet(path, space="t")
    assert loaded.metadata["step"] == "7"
    x = torch.randint(0, 300, (1, 16))
    a = T.sample(1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, a), net(x, a))
    with pytest.raises(CheckpointError, match="space"):
        load_supernet(path, space="s")
    with pytest.raises(CheckpointError, match="no such file"):
        load_supernet(tmp_path / "missing.safetensors")
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt.safetensors"):
        load_supernet(bad)
