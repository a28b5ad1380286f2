import torch

# Two cores here and in CI: keep torch from oversubscribing them when pytest runs things in parallel.
torch.set_num_threads(2)


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: extra threads only add synchronisation, which is very slow when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    from dpcluster.data import load_data
    from dpcluster.specs import DataSpec

    return load_data(DataSpec())
