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


SLURM_MAX_ARRAY_SIZE = 8
SLURM_MAX_SUBMIT_JOBS = 20


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
    # Every Slurm test runs inside site limits, as on a real cluster: small arrays, and a cap on what root may
    # have queued (the test of the limits themselves lowers it further for a while).
    env = {**os.environ, "DPCLUSTER_SLURM_MAX_ARRAY_SIZE": str(SLURM_MAX_ARRAY_SIZE),
           "DPCLUSTER_SLURM_MAX_SUBMIT_JOBS": str(SLURM_MAX_SUBMIT_JOBS)}
    started = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=600,
                             stdin=subprocess.DEVNULL, env=env)
    assert started.returncode == 0, f"slurm/cluster.sh start failed:\n{started.stdout}\n{started.stderr}"


@pytest.fixture
def ray_head():
    """A Ray cluster of its own, started with ``ray start`` (dashboard and job server included), without token
    authentication (a local, throwaway head); stopped after the test."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path
    from types import SimpleNamespace

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    import ray as ray_module

    # `ray stop` ends every Ray process on the machine: this process's own local Ray (an earlier test's) must be
    # shut down first, or its end takes this process with it.
    ray_module.shutdown()
    ray = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    dashboard, gcs = free_port(), free_port()
    started = subprocess.run([ray, "start", "--head", "--num-cpus", "2", "--port", str(gcs),
                              "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
                              "--disable-usage-stats"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stdout + started.stderr
    head = SimpleNamespace(ray=ray, dashboard=f"http://127.0.0.1:{dashboard}", gcs=f"127.0.0.1:{gcs}", env=env)
    try:
        deadline = time.time() + 120
        while True:  # the job server answers once the dashboard is up
            try:
                urllib.request.urlopen(f"{head.dashboard}/api/version", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "the Ray dashboard did not come up"
                time.sleep(1)
        yield head
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)
