"""dpcluster tune --backend slurm on the real single-node Slurm (slurm/cluster.sh): the search runs as one Slurm
job with a Ray of its own inside the allocation, and running the command again follows that job."""

import pyarrow.dataset as ds
import pytest

from dpcluster.cli.main import main
from dpcluster.specs import ExperimentSpec
from test_tune import SEARCH as TUNE_SEARCH

pytest.importorskip("submitit")

# test_tune's search of two learning rates, each once.
SEARCH = TUNE_SEARCH.format(scheduler="fifo").replace("samples = 2", "samples = 1")


def test_a_search_runs_as_one_slurm_job_and_a_second_command_follows_it(slurm_cluster, tmp_path, capsys):
    from dpcluster.sweeps.scheduler_state import slurm_states

    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH)
    out = tmp_path / "out"
    command = ["tune", str(spec), "--out", str(out), "--backend", "slurm", "--partition", "debug", "--cpus", "2",
               "--time-min", "10", "--device", "cpu"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    job_id = (out / "slurm_job").read_text().strip()
    assert f"Slurm holds the search as job {job_id}" in printed, printed
    # Again while Slurm holds it: the same job is followed to its end, no second one submitted.
    assert main([*command, "--wait"]) == 0
    printed = capsys.readouterr().out
    assert f"the search already runs as Slurm job {job_id}" in printed, printed
    assert f"Slurm job {job_id} ended: COMPLETED" in printed and "best configuration" in printed, printed
    assert (out / "slurm_job").read_text().strip() == job_id
    assert [p.name for p in (out / "logs").iterdir() if p.is_dir()] == [job_id]
    assert slurm_states([job_id])[job_id].state == "COMPLETED"
    # The trials ran inside the job: its log has the search's lines; the results are the usual ones.
    log = next((out / "logs" / job_id).glob("*_log.out")).read_text()
    assert "trial 2/2" in log and "best configuration" in log, log[-3000:]
    rows = ds.dataset(out / "trials", format="parquet", partitioning="hive").to_table().to_pylist()
    last = {r["config/distilled_training.lr"]: r for r in rows if r["final"]}
    assert last[0.05]["accuracy"] > last[0.00001]["accuracy"] + 0.2, last
    assert ExperimentSpec.load(out / "best.toml").distilled_training.lr == 0.05


def test_slurm_options_are_refused_off_slurm_and_bad_ones_on_it(capsys, tmp_path):
    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH)
    for args, expected in ((["--partition", "debug"], "--partition is for --backend slurm"),
                           (["--backend", "slurm", "--address", "1.2.3.4:6379"], "--address is for --backend ray"),
                           (["--backend", "slurm", "--cpus", "0"], "--cpus must be >= 1"),
                           (["--backend", "slurm", "--sbatch", "nonsense"],
                            "Slurm refused the search's job: sbatch: unrecognized option '--nonsense'")):
        assert main(["tune", str(spec), "--out", str(tmp_path / "out"), *args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, (args, err)
    assert not (tmp_path / "out").exists()
