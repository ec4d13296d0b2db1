"""A real multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head with no CPU
for trials and one-CPU worker nodes): a sweep through `--address`, losing a worker node mid-sweep,
and a sweep submitted as a Ray Job."""

from __future__ import annotations

import subprocess
import sys

import pytest
from ray.cluster_utils import Cluster

from sweeper.cli.ui import free_port
from tests.e2e.helpers import (
    assert_exact,
    cli_env,
    start_cli,
    trials,
    wait_for,
    write_spec,
)


@pytest.fixture(scope="module")
def cluster():
    dashboard = free_port("127.0.0.1")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": dashboard,
            # not Ray's fixed default (52365), which another Ray on this machine may hold: the
            # job agent then never starts and jobs wait for it
            "dashboard_agent_listen_port": free_port("0.0.0.0"),
        },
    )
    workers = [
        cluster.add_node(num_cpus=1, dashboard_agent_listen_port=free_port("0.0.0.0"))
        for _ in range(2)
    ]
    cluster.wait_for_nodes()
    cluster.dashboard_url = f"http://127.0.0.1:{dashboard}"
    yield cluster, workers
    cluster.shutdown()


def _node_ids(folder, name, stage="only"):
    return {t.user_attrs["node_id"] for t in trials(folder, name, stage) if t.state.is_finished()}


def test_a_sweep_submitted_as_a_ray_job(cluster, tmp_path):
    ray_cluster, _ = cluster
    spec = write_spec(tmp_path, "job", "  - {name: only, trials: 4}", source="builtin:flower")
    folder = tmp_path / "job-sweep"
    spec.write_text(spec.read_text() + f"dir: {folder}\n")
    command = [
        *(sys.executable, "-m", "ray.scripts.scripts", "job", "submit"),
        *("--address", ray_cluster.dashboard_url, "--working-dir", str(tmp_path), "--"),
        *(sys.executable, "-m", "sweeper.cli.commands", "launch", "job.yaml", "--quiet"),
    ]

    def submit():
        done = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=400)
        # the head's job agent may still be starting: Ray answers 500 "No available agent"
        return None if "No available agent" in done.stderr else done

    submitted = wait_for(submit, 300, "the job agent to take the job")  # slow under load
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    assert "succeeded" in submitted.stdout
    assert_exact(folder, "job", {"only": 4})


def test_losing_a_worker_node_mid_sweep_keeps_exact_counts(cluster, tmp_path):
    ray_cluster, workers = cluster
    write_spec(
        tmp_path, "multi", "  - {name: only, trials: 8}", source="builtin:digits", epochs=150
    )
    driver = start_cli(
        "launch", "multi.yaml", "--quiet", "--address", ray_cluster.address, cwd=tmp_path
    )
    folder = tmp_path / "sweeps" / "multi"

    def states():
        return [(t.state.name, len(t.intermediate_values)) for t in trials(folder, "multi", "only")]

    def training():  # asked and already reporting epochs: on a node (an asked trial's task may
        # still wait for the CPU its predecessor is freeing)
        return [s for s, epochs in states() if s == "RUNNING" and epochs]

    # both one-CPU workers busy (two trials training, one per node) once a trial has finished:
    # the node removed next is then training one, whatever the machine's speed
    wait_for(
        lambda: any(s == "COMPLETE" for s, _ in states()) and len(training()) == 2,
        400,
        "a finished trial and both worker nodes training",
        seen=states,
    )
    ray_cluster.remove_node(workers[0], allow_graceful=False)
    ray_cluster.add_node(num_cpus=1)  # a replacement, as an autoscaler would bring
    _, err = driver.communicate(timeout=400)
    assert driver.returncode == 0, err

    assert_exact(folder, "multi", {"only": 8})
    assert len(_node_ids(folder, "multi")) >= 2  # trials ran on more than one node
    own = trials(folder, "multi", "only")
    lost_trials = [t for t in own if t.user_attrs.get("reason") == "lost"]
    assert lost_trials, "the removed node was training a trial"
    for lost in lost_trials:
        retries = [t for t in own if t.user_attrs.get("retry_of") == lost.number]
        assert [t.params for t in retries] == [lost.params]
