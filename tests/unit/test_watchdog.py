from pipetune.record.watchdog import Watchdog


def feed(dog: Watchdog, t: float, rows: float, running: float = 1.0) -> str | None:
    return dog.observe(
        t,
        {
            "0/ReadRange_1": {"rows_out": 100.0, "tasks_running": 0.0},
            "0/MapBatches(stuck)_2": {"rows_out": rows, "tasks_running": running},
        },
    )


def test_fires_once_when_rows_stop_while_tasks_run() -> None:
    dog = Watchdog(stall_after=10)
    assert [feed(dog, t, rows=t) for t in range(5)] == [None] * 5
    assert feed(dog, 10, rows=4) is None  # 6 s without progress
    assert feed(dog, 14, rows=4) == "0/MapBatches(stuck)_2"
    assert feed(dog, 20, rows=4) is None  # already reported
    assert feed(dog, 21, rows=5) is None  # progress re-arms it
    assert feed(dog, 40, rows=5) == "0/MapBatches(stuck)_2"


def test_idle_is_not_stuck() -> None:
    dog = Watchdog(stall_after=5)
    assert [feed(dog, t, rows=1, running=0) for t in range(20)] == [None] * 20
