"""``--executor dask``: the same verdicts from a Dask cluster (a LocalCluster of 2 workers here).

Oracle: the local run's own JSON on the same submissions, byte for byte apart from ``seconds``.
"""
import json

import dask
import pytest
from distributed import LocalCluster

from symbackprop.cli import main

from .test_grading import LAYERS, plant, without_seconds

PICKED = ("correct", "wrong_math", "exit_on_import", "no_class", "os_exit")


@pytest.fixture(scope="module")
def cluster():
    with dask.config.set({"distributed.worker.daemon": False}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_a_cluster_grades_as_this_machine_does(cluster, tmp_path):
    plant(tmp_path, {name: LAYERS[name] for name in PICKED})
    pattern = f"{tmp_path}/*/layers.py:Sigmoid"
    local, remote = tmp_path / "local.json", tmp_path / "dask.json"
    common = ["verify-layer", pattern, "--against", "sigmoid", "--timeout", "10", "--json"]
    assert main([*common, "--jobs", "2", "-o", str(local)]) == 1
    assert main([*common, "--executor", "dask", "--scheduler", cluster.scheduler_address, "-o", str(remote)]) == 1
    assert without_seconds(remote.read_text()) == without_seconds(local.read_text())
    verdicts = {r["path"].split("/")[-2]: r["ok"] for r in json.loads(remote.read_text())["results"]}
    assert verdicts == {"correct": True, "wrong_math": False, "exit_on_import": False, "no_class": False,
                        "os_exit": False}


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys):
    plant(tmp_path, {"correct": LAYERS["correct"]})
    code = main(["verify-layer", f"{tmp_path}/*/layers.py:Sigmoid", "--against", "sigmoid", "--executor", "dask",
                 "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach it" in err


def test_the_dask_executor_needs_a_scheduler(tmp_path, capsys):
    plant(tmp_path, {"correct": LAYERS["correct"]})
    assert main(["verify-layer", f"{tmp_path}/*/layers.py:Sigmoid", "--against", "sigmoid",
                 "--executor", "dask"]) == 2
    assert "needs --scheduler" in capsys.readouterr().err
