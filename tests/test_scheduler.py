"""The scheduler's arithmetic: limits, prefetch and round-robin fairness."""

from service.engine.scheduler import Scheduler


def test_claims_up_to_prefetch_and_starts_within_running_limits() -> None:
    scheduler: Scheduler[int] = Scheduler(max_running=4, max_running_per_batch=3, prefetch=2)
    assert scheduler.to_claim({"a": 3, "b": 3}) == {"a": 4, "b": 4}
    for item in range(5):
        scheduler.add("a", item)
    scheduler.add("b", 100)
    started = scheduler.startable()
    # Round-robin across batches, at most 3 of batch a, 4 in all.
    assert sorted(started) == [("a", 0), ("a", 1), ("a", 2), ("b", 100)]
    assert scheduler.startable() == []
    scheduler.finished("a")
    assert scheduler.startable() == [("a", 3)]
    assert scheduler.to_claim({"a": 3, "b": 3}) == {"a": 1, "b": 1}
    scheduler.recorded("a")
    assert scheduler.to_claim({"a": 3, "b": 3}) == {"a": 2, "b": 1}


def test_a_batch_limited_to_one_gets_no_prefetch() -> None:
    scheduler: Scheduler[int] = Scheduler(max_running=4, max_running_per_batch=3, prefetch=2)
    assert scheduler.to_claim({"seq": 1, "wide": 10}) == {"seq": 1, "wide": 6}


def test_unstarted_items_are_given_back() -> None:
    scheduler: Scheduler[int] = Scheduler(max_running=1, max_running_per_batch=1, prefetch=3)
    for item in range(3):
        scheduler.add("a", item)
    assert scheduler.startable() == [("a", 0)]
    assert scheduler.take_unstarted(["other"]) == []
    assert scheduler.take_unstarted(["a"]) == [1, 2]
    assert scheduler.claimed == 1


def test_claims_wait_until_a_worthwhile_amount_of_room_frees() -> None:
    scheduler: Scheduler[int] = Scheduler(max_running=4, max_running_per_batch=4, prefetch=2)
    assert scheduler.wants_more()
    for item in range(8):
        scheduler.add("a", item)
    scheduler.startable()
    assert not scheduler.wants_more()
    scheduler.finished("a")
    scheduler.recorded("a")
    assert not scheduler.wants_more()  # one free place, four ready: not yet
    scheduler.finished("a")
    assert not scheduler.wants_more()  # its result is not stored yet
    scheduler.recorded("a")
    assert scheduler.wants_more()  # room for half a running set
