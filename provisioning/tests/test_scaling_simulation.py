"""The autoscaling simulation's mechanics (bench/autoscaling.py, docs/autoscaling.md): the
parts of AWS's documented behaviour its figures rest on, which a change could break silently.

Alarm datapoints and cooldowns as the Application Auto Scaling user guide and API reference
state them, managed scaling's warm-up and scale-in as the ECS developer guide does; the links
are beside the code."""

from bench.autoscaling import (
    MINUTE,
    Fixed,
    ManagedScaling,
    Scaling,
    Service,
    Step,
    TargetTracking,
    simulate,
)

TARGET = 16


def _policy(**fields) -> TargetTracking:
    return TargetTracking(Scaling(**{"target_requests_per_task": TARGET, **fields}))


def test_scale_out_needs_three_breaching_minutes():
    policy = _policy(max_tasks=4)

    assert policy.decide(600, [5, 20, 20], desired=1) == 1
    assert policy.decide(600, [20, TARGET, 20], desired=1) == 1  # at the target is no breach
    assert policy.decide(600, [20, None, 20], desired=1) == 1  # missing: INSUFFICIENT_DATA
    # Proportional and rounded up: 1 task x 40 / 16 = 2.5 -> 3, within max.
    assert policy.decide(600, [20, 20, 40], desired=1) == 3
    assert _policy(max_tasks=4).decide(600, [20, 20, 400], desired=1) == 4


def test_scale_out_cooldown_counts_the_capacity_just_added():
    policy = _policy(max_tasks=10, scale_out_cooldown_seconds=300)
    assert policy.decide(600, [20, 20, 32], desired=1) == 2

    # Still 32 a minute later (the new task is not serving yet): no compounding.
    assert policy.decide(660, [20, 32, 32], desired=2) == 2
    # A larger need within the cooldown still scales out at once: 1 x 64 / 16.
    assert policy.decide(720, [32, 32, 64], desired=2) == 4
    # After the cooldown the need is computed on the desired count again.
    assert policy.decide(1100, [32, 32, 32], desired=4) == 8


def test_scale_in_needs_fifteen_minutes_under_ninety_percent_and_stops_at_min():
    policy = _policy(min_tasks=2, max_tasks=8)
    low = [4.0] * 15

    assert policy.decide(3600, [20, *low[1:]], desired=8) == 8
    assert policy.decide(3600, low[:14], desired=8) == 8  # 14 datapoints are not enough
    assert _policy(max_tasks=20).decide(3600, [0.9 * TARGET] * 15, desired=20) == 20
    assert policy.decide(3600, low, desired=8) == 2  # 8 x 4 / 16 = 2
    assert policy.decide(3600 + 300, [0.5] * 15, desired=2) == 2  # never below min


def test_scale_in_waits_for_its_cooldown_which_a_scale_out_ends():
    policy = _policy(max_tasks=8, scale_in_cooldown_seconds=300)
    assert policy.decide(3600, [6.0] * 15, desired=8) == 3

    assert policy.decide(3600 + 240, [2.0] * 15, desired=3) == 3
    assert policy.decide(3600 + 300, [2.0] * 15, desired=3) == 1
    assert policy.decide(3600 + 360, [2.0] * 12 + [20, 20, 20], desired=1) == 2
    assert policy.decide(3600 + 420, [2.0] * 15, desired=2) == 1


def test_managed_scaling_waits_for_warm_up_and_sheds_half_a_minute():
    managed = ManagedScaling(warmup_s=300)
    managed.publish(needed=4, instances=1)

    assert managed.decide(600, needed=4, launch_times=[0], empty=0) == 3
    assert managed.decide(660, needed=4, launch_times=[0, 600, 600, 600], empty=0) == 0
    managed.publish(needed=5, instances=4)
    assert managed.decide(900, needed=5, launch_times=[0, 600, 600, 600], empty=0) == 1

    for _ in range(14):
        managed.publish(needed=1, instances=4)
    assert managed.decide(1800, needed=1, launch_times=[0] * 4, empty=3) == 0
    managed.publish(needed=1, instances=4)
    assert managed.decide(1860, needed=1, launch_times=[0] * 4, empty=3) == -2


SHORT = Service(prompt_tokens=100, output_tokens=20)  # 4 tasks carry 40 requests/s
STEP = Step(base_rps=5, peak_rps=40, before_s=5 * MINUTE, peak_s=10 * MINUTE, after_s=30 * MINUTE)


def test_a_fixed_count_never_changes():
    result = simulate(Fixed(2), load=STEP, service=SHORT)

    assert not result.activities
    assert {(row["desired"], row["serving"], row["instances"]) for row in result.timeline} == {
        (2, 2, 2)
    }
    assert result.gpu_hours == 2 * STEP.duration_s / 3600


def test_the_step_scales_out_after_the_alarm_and_back_in_no_lower_than_min():
    result = simulate(Scaling(min_tasks=1, max_tasks=4), load=STEP, service=SHORT)
    tasks = [(at, old, new) for at, kind, old, new in result.activities if kind == "tasks"]

    # Three breaching minutes from the step, seen a minute late (the metric delay).
    first_out = tasks[0]
    assert first_out[0] >= STEP.before_s + 3 * MINUTE + MINUTE
    assert first_out[2] > first_out[1]
    instances = [at for at, kind, _, _ in result.activities if kind == "instances"]
    assert instances[0] > first_out[0]  # the capacity provider follows the tasks
    ins = [(at, new) for at, old, new in tasks if new < old]
    assert ins
    assert ins[0][0] >= STEP.before_s + STEP.peak_s + 15 * MINUTE
    assert min(row["desired"] for row in result.timeline) >= 1
    assert result.timeline[-1]["desired"] == 1
