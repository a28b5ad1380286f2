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


@pytest.fixture(scope="session")
def slurm_cluster():
    """The real single-node Slurm that slurm/cluster.sh runs, started if needed. Skips where Slurm is not
    installed, unless DPCLUSTER_REQUIRE_SLURM is set: then a missing or broken Slurm fails instead."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    required = os.environ.get("DPCLUSTER_REQUIRE_SLURM", "").strip().lower() not in ("", "0", "false", "no")
    if shutil.which("sbatch") is None:
        message = "Slurm is not installed (no sbatch on PATH): run `bash slurm/cluster.sh up`"
        if required:
            pytest.fail(f"DPCLUSTER_REQUIRE_SLURM is set but {message}")
        pytest.skip(message)
    script = Path(__file__).resolve().parents[1] / "slurm" / "cluster.sh"
    started = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=600,
                             stdin=subprocess.DEVNULL)
    assert started.returncode == 0, f"slurm/cluster.sh start failed:\n{started.stdout}\n{started.stderr}"
