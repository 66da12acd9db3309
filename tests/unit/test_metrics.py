"""Each metric is declared once; the adapter and the node sampler emit only declared names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipetune.metrics import NODE_METRICS, OPERATOR_METRICS, declared


def test_the_adapter_samples_exactly_the_declared_operator_metrics() -> None:
    from pipetune.record import _ray_compat, in_task

    queue = SimpleNamespace(num_blocks=2, memory_usage=10)
    metrics = SimpleNamespace(**{name: 1 for name in _METRIC_FIELDS})
    op, state = SimpleNamespace(metrics=metrics), SimpleNamespace(input_queues=[queue], output_queue=queue)
    values = _ray_compat._op_snapshot(op, state, None)
    assert set(values) == set(OPERATOR_METRICS) - {in_task.UDF_ROWS}  # the recorder adds that one (workers count it)


def test_the_node_sampler_emits_only_declared_node_metrics() -> None:
    from pipetune.record.nodes import HostSampler

    assert set(HostSampler(None).sample()) <= set(NODE_METRICS)


def test_an_undeclared_name_is_refused() -> None:
    assert declared("rows_out") == "rows_out"
    with pytest.raises(KeyError, match="not declared"):
        declared("rows_outt")


_METRIC_FIELDS = (
    "num_row_inputs_received",
    "rows_task_outputs_generated",
    "bytes_inputs_received",
    "bytes_task_outputs_generated",
    "bytes_task_inputs_processed",
    "num_tasks_running",
    "num_tasks_finished",
    "num_tasks_failed",
    "obj_store_mem_internal_inqueue_blocks",
    "obj_store_mem_internal_inqueue",
    "obj_store_mem_internal_outqueue_blocks",
    "obj_store_mem_internal_outqueue",
    "task_submission_backpressure_time",
    "task_output_backpressure_time",
    "num_alive_actors",
    "num_active_actors",
    "num_pending_actors",
)


def test_an_operator_ending_in_a_write_is_counted_by_the_rows_it_consumed() -> None:
    from pipetune.metrics import rows_moved

    assert rows_moved("MapBatches(price)->Write") == rows_moved("Write [3]") == "rows_in"
    assert rows_moved("MapBatches(price)") == rows_moved("ReadParquet->MapBatches(WriteLike)") == "rows_out"


def test_a_stopped_execution_gives_its_share_of_the_cluster_back_and_waits_until_it_is_given() -> None:
    """A killed driver never cancels its request to Ray Data's autoscaling coordinator, which then splits the
    cluster with it for minutes; ``release`` cancels it and waits for the actor to have the call."""
    from pipetune.record import _ray_compat

    cancelled: list[str] = []

    class Method:
        def remote(self, requester: str) -> str:
            cancelled.append(requester)
            return "ref"

    waited: list[tuple[object, float]] = []
    client = SimpleNamespace(_autoscaling_coordinator=SimpleNamespace(cancel_request=Method()))
    executor = SimpleNamespace(_cluster_autoscaler=SimpleNamespace(_autoscaling_coordinator=client,
                                                                   _requester_id="data-7"))  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_ray_compat.ray, "get", lambda ref, timeout: waited.append((ref, timeout)))
        _ray_compat.release(executor)
        never_asked = SimpleNamespace(_cluster_autoscaler=SimpleNamespace(on_executor_shutdown=lambda: None))
        _ray_compat.release(never_asked)  # no coordinator created yet: Ray's own shutdown path, nothing to wait for
    assert cancelled == ["data-7"] and waited == [("ref", _ray_compat.RELEASE_WAIT_S)]
