"""The run's other processes (a split's coordinator, actors that loop over splits): their channel and indices."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from pipetune import capture
from pipetune.capture import ConsumerSamples, Message, StageBuilt
from pipetune.model import Run, RunStatus
from pipetune.record import remote
from pipetune.record.channel import Sender
from tests.unit.builders import stage


def test_a_keyed_index_is_shared_and_a_plain_one_is_always_new(tmp_path: Path) -> None:
    first, second = remote.Ledger(str(tmp_path / "ledger.json")), remote.Ledger(str(tmp_path / "ledger.json"))
    assert first.take("stage") == (0, True)
    assert second.take("stage", "train.py:23") == (1, True)  # another process, the same file
    assert first.take("stage", "train.py:23") == (1, False)  # a loop two actors run is one stage
    assert first.take("execution") == (0, True) and second.take("execution") == (1, True)
    assert remote.Ledger().take("stage") == (0, True)  # no recorder: counted in memory


def test_indices_stay_unique_when_processes_take_them_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.json")
    taken: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(20):
            index, _ = remote.Ledger(path).take("stage")
            with lock:
                taken.append(index)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == list(range(80))


def test_every_connection_to_the_inbox_delivers_its_messages() -> None:
    got: list[Message] = []
    lock = threading.Lock()

    def deliver(message: Message) -> None:
        with lock:
            got.append(message)

    inbox = remote.Inbox(deliver)
    sent = [StageBuilt(stage(3, "iter_batches")), ConsumerSamples(1.5, {"consumer:3/0": {"batches": 2.0}})]
    for message in sent:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(inbox.env()[remote.ENV_SOCKET])
            Sender(conn.fileno()).send(message)
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    inbox.close()
    assert sorted(map(capture.encode, got)) == sorted(map(capture.encode, sent))
    assert not os.path.exists(inbox.dir)  # the socket and the ledger go with the run


def test_stages_sent_from_several_processes_are_kept_in_index_order() -> None:
    seed = Run(id="r", script="s.py", started_at=0.0, status=RunStatus.RUNNING)
    run = capture.build(
        seed, [StageBuilt(stage(2, "iter_batches")), StageBuilt(stage(0, "range")), StageBuilt(stage(1, "map"))]
    )
    assert [s.index for s in run.stages] == [0, 1, 2]


@pytest.mark.parametrize(
    ("address", "here"),
    [("auto", True), ("127.0.0.1:6379", True), ("localhost:6379", True), ("ray://10.0.0.9:10001", False)],
)
def test_only_a_cluster_on_this_machine_gets_the_recording_environment(address: str, here: bool) -> None:
    assert remote.on_this_machine(address) is here


def _attached(monkeypatch: pytest.MonkeyPatch, address: str, job_config: dict[str, object] | None = None) -> None:
    """A driver under the recorder, attached to ``address``; what ``reach_workers`` sets is restored after."""
    monkeypatch.setattr(remote, "_reachable", False)
    for name in (remote.ENV_T0, remote.ENV_OVERRIDES, remote.ENV_CWD):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("RAY_ADDRESS", address)
    monkeypatch.setenv(remote.ENV_SOCKET, "/tmp/pipetune-x/events.sock")
    if job_config is None:
        monkeypatch.delenv(remote.JOB_CONFIG_ENV, raising=False)
    else:
        monkeypatch.setenv(remote.JOB_CONFIG_ENV, json.dumps(job_config))


def test_an_attached_local_cluster_gets_the_environment_through_the_job_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _attached(monkeypatch, "127.0.0.1:6379", {"runtime_env": {"env_vars": {"USER_VAR": "kept"}}})
    monkeypatch.setenv("EXTRA", "1")
    remote.reach_workers(12.5, {"stages": {}}, ("EXTRA",), "splits = ds.streaming_split(2)")
    env_vars = json.loads(os.environ[remote.JOB_CONFIG_ENV])["runtime_env"]["env_vars"]
    assert env_vars["USER_VAR"] == "kept" and env_vars["EXTRA"] == "1"
    assert env_vars[remote.ENV_T0] == "12.5" and env_vars[remote.ENV_SOCKET] == "/tmp/pipetune-x/events.sock"


def test_a_script_that_keeps_its_data_in_the_driver_costs_an_attached_cluster_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _attached(monkeypatch, "127.0.0.1:6379")
    remote.reach_workers(1.0, {}, (), "ray.data.range(10).map_batches(f).write_parquet('out')")
    assert remote.JOB_CONFIG_ENV not in os.environ and type(remote.tag_for(1)) is int


def test_a_remote_cluster_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    _attached(monkeypatch, "ray://10.0.0.9:10001")
    remote.reach_workers(1.0, {}, (), "splits = ds.streaming_split(2)")
    assert remote.JOB_CONFIG_ENV not in os.environ


def test_a_stage_tag_travels_as_its_index_and_loads_pipetune_where_it_lands(monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    monkeypatch.delenv(remote.ENV_SOCKET, raising=False)  # no recorder here: nothing to install
    tag = pickle.loads(pickle.dumps(remote.StageTag(4)))
    assert isinstance(tag, remote.StageTag) and tag == 4
    assert pickle.dumps(remote.StageTag(4)).count(b"tag_arrived") == 1  # unpickling calls pipetune


def test_only_workers_that_can_load_pipetune_get_a_tag_that_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "_reachable", False)
    assert type(remote.tag_for(3)) is int  # a cluster elsewhere unpickles the plan without pipetune
    monkeypatch.setattr(remote, "_reachable", True)
    assert type(remote.tag_for(3)) is remote.StageTag


def test_the_studys_local_head_gets_the_object_store_ray_gives_a_local_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's ``Cluster`` helper defaults to a 150 MiB object store; trials must run on the store a user's own
    ``ray.init()`` gets here (Ray's rule), or they measure backpressure the user's runs never see."""
    import ray.cluster_utils
    from ray._private import utils

    from pipetune.record import _ray_compat

    started: list[dict[str, object]] = []

    class Head:
        address = "127.0.0.1:1"

        def __init__(self, initialize_head: bool, head_node_args: dict[str, object]) -> None:
            started.append(head_node_args)

        def shutdown(self) -> None:
            pass

    monkeypatch.setattr(ray.cluster_utils, "Cluster", Head)
    monkeypatch.setattr(utils, "estimate_available_memory", lambda: 10 * 2**30)
    monkeypatch.setattr(utils, "get_shared_memory_bytes", lambda: 8 * 2**30)
    with _ray_compat.local_head() as address:
        assert address == "127.0.0.1:1"
    assert started[0]["object_store_memory"] == utils.resolve_object_store_memory(10 * 2**30)
    assert started[0]["object_store_memory"] > 150 * 2**20
