"""Autoscaling on vLLM's queue, simulated: a load step against AWS's documented scaling.

    .venv/bin/python bench/autoscaling.py [--peak-rps 40] [--max-tasks 4] [--target 16]
        [--prompt-tokens 500] [--output-tokens 150] [--fixed 1,4] [--seed 1]

No AWS call: a discrete-time simulation in 1 s steps (docs/autoscaling.md is the same on
paper). Requests arrive at ``--base-rps`` (Poisson), step to ``--peak-rps`` for
``--peak-minutes`` and fall back, to show scale-in. Each task is one g5.2xlarge (one A10G,
24 GB) running vLLM on an 8B model in bf16, modelled by ``Service``: every figure of it is
an assumption, derived in its comments, and an option. The scaling follows AWS's documented
behaviour, each piece with its page: the target-tracking policy's two CloudWatch alarms on
RequestsInFlight (centralllm/serving.py), cooldowns, ECS's capacity provider bringing GPU
instances (CapacityProviderReservation, instance warm-up, scale-in 15 minutes later), and
the times an instance, an image pull and a model load take (assumptions, options).

Printed for the autoscaled service and for fixed desired counts (today's ``desired_count``):
minutes until the queue is back under target, p95 and max queue wait, requests timed out or
refused, GPU-hours; then a timeline, one line a minute.
"""

import argparse
import math
import random
import sys
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from centralllm.serving import QUEUE_INTERVAL_SECONDS

MINUTE = 60


@dataclass(frozen=True)
class Service:
    """One vLLM task on a g5.2xlarge, as a fluid model of continuous batching: each engine
    step costs ``step_ms`` (reading the weights) plus ``token_ms`` per token it processes,
    one per running sequence in decode plus prompt tokens (chunked prefill) up to
    ``batch_tokens``; the KV cache bounds how many requests run at once."""

    # 8.0 B parameters in bf16 are 16 GB; the A10G reads 600 GB/s: 27 ms a step at least.
    step_ms: float = 30.0
    # 2 x 8 GFLOP per token at ~35 TFLOP/s, half of the A10G's ~70 TFLOP/s bf16 tensor peak.
    token_ms: float = 0.45
    batch_tokens: int = 2048  # vLLM's max_num_batched_tokens
    # 24 GB x 0.9 (vLLM's gpu_memory_utilization) - 16 GB of weights - ~1.3 GB of activations
    # and CUDA graphs = ~4.3 GB; Ministral-8B's KV is 2 x 36 layers x 8 heads x 128 x 2 bytes
    # = 144 KiB a token: ~30,000 tokens.
    kv_cache_tokens: int = 30_000
    prompt_tokens: int = 500  # a chat turn with some context (assumption)
    output_tokens: int = 150

    @property
    def max_running(self) -> int:
        """Requests in the batch at once: as many as the KV cache holds whole."""
        return max(1, self.kv_cache_tokens // (self.prompt_tokens + self.output_tokens))

    def requests_per_second(self, running: float) -> float:
        """What one task completes per second with ``running`` requests always in its batch."""
        gpu_ms = self.prompt_tokens * self.token_ms + self.output_tokens * (
            self.step_ms / running + self.token_ms
        )
        return 1000 / gpu_ms


@dataclass(frozen=True)
class Delays:
    """How long things take. Documented values say where; the rest are assumptions."""

    # An embedded-metric line reaches CloudWatch Logs, becomes a metric, and the alarm's next
    # evaluation sees its minute: about a minute after the minute ends (assumption).
    metric_delay_s: int = 60
    # RunInstances to the ECS agent registered, ECS-optimized GPU AMI (assumption).
    instance_launch_s: int = 150
    # Managed scaling's instanceWarmupPeriod default, which ecs.CapacityProvider keeps: no
    # further scale-out of the group while an instance is this young.
    # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ManagedScaling.html
    # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/cluster-auto-scaling.html
    instance_warmup_s: int = 300
    # The vllm/vllm-openai image with ours on top, ~10 GB, from ECR to a fresh instance.
    image_pull_s: int = 180
    # 16 GB of weights from Hugging Face into the empty host cache of a fresh instance, onto
    # the GPU, then vLLM's compilation and CUDA graph capture (assumption).
    model_load_s: int = 240
    # On an instance that ran the service before, the image is there and the weights are in
    # the host's cache (the task definition's hf-cache volume): loading and compiling only.
    model_load_cached_s: int = 90
    # The NLB target group's defaults: healthy after 5 checks 30 s apart.
    # https://docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-health-checks.html
    healthy_s: int = 150
    # ECS waits for the target to leave the NLB (deregistration delay, default 300 s) before
    # it stops a task; requests still in it then are cut.
    # https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-target-groups.html#deregistration-delay
    deregistration_s: int = 300
    # A streamed Regional API Gateway integration is cut after 5 minutes without a byte
    # (provisioning/resources/apigateway.py); a queued request sends none.
    client_timeout_s: int = 300


@dataclass(frozen=True)
class Scaling:
    """The environment's scaling fields, named and defaulted as the engine has them."""

    min_tasks: int = 1
    max_tasks: int = 4
    target_requests_per_task: float = 16
    scale_out_cooldown_seconds: int = 60
    scale_in_cooldown_seconds: int = 300


@dataclass(frozen=True)
class Fixed:
    """Today's service: ``desired_count`` tasks, each on its own instance, and nothing scales."""

    count: int


@dataclass(frozen=True)
class Step:
    """The load: ``base_rps``, then ``peak_rps`` for ``peak_s``, then ``base_rps`` again."""

    base_rps: float = 5
    peak_rps: float = 40
    before_s: int = 10 * MINUTE
    peak_s: int = 30 * MINUTE
    after_s: int = 60 * MINUTE

    @property
    def duration_s(self) -> int:
        return self.before_s + self.peak_s + self.after_s

    def rps(self, now: int) -> float:
        in_peak = self.before_s <= now < self.before_s + self.peak_s
        return self.peak_rps if in_peak else self.base_rps


class TargetTracking:
    """Application Auto Scaling's target-tracking policy on the service's desired count.

    It creates two CloudWatch alarms on the metric (Average, 1-minute periods): one above the
    target for 3 of 3 datapoints scales out, one below 90% of it for 15 of 15 scales in
    (the user guide says "usually more than 10% lower"; the datapoints are those of the
    alarms AWS creates, as https://github.com/aws/containers-roadmap/issues/1208 reports them).
    An alarm with a scaling action invokes it every minute it stays in ALARM.
    https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-target-tracking.html
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html
    The new capacity is proportional, rounded up, within min and max. During the scale-out
    cooldown, the capacity added counts towards the next scale-out: only a larger one
    happens (our reading: the need is computed on the capacity before the cooldown's
    scale-out). Scale-in waits for its cooldown, which a scale-out ends.
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_TargetTrackingScalingPolicyConfiguration.html
    Missing datapoints leave the alarms in INSUFFICIENT_DATA: no action.
    """

    HIGH_DATAPOINTS = 3
    LOW_DATAPOINTS = 15
    LOW_FRACTION = 0.9

    def __init__(self, scaling: Scaling) -> None:
        self.scaling = scaling
        self.last_scale_out: int | None = None
        self.capacity_before_scale_out = 0
        self.last_scale_in: int | None = None

    def decide(self, now: int, datapoints: list[float | None], desired: int) -> int:
        """The desired count after this minute's evaluation; ``datapoints`` oldest first,
        the last one the newest minute the alarms can see."""
        target = self.scaling.target_requests_per_task
        high = datapoints[-self.HIGH_DATAPOINTS :]
        low = datapoints[-self.LOW_DATAPOINTS :]
        if len(high) == self.HIGH_DATAPOINTS and all(v is not None and v > target for v in high):
            return self._scale_out(now, high[-1], desired)
        low_limit = self.LOW_FRACTION * target
        if len(low) == self.LOW_DATAPOINTS and all(v is not None and v < low_limit for v in low):
            return self._scale_in(now, low[-1], desired)
        return desired

    def _proportional(self, capacity: int, value: float) -> int:
        wanted = math.ceil(capacity * value / self.scaling.target_requests_per_task)
        return min(self.scaling.max_tasks, max(self.scaling.min_tasks, wanted))

    def _in_cooldown(self, since: int | None, seconds: int, now: int) -> bool:
        return since is not None and now - since < seconds

    def _scale_out(self, now: int, value: float, desired: int) -> int:
        cooling = self._in_cooldown(
            self.last_scale_out, self.scaling.scale_out_cooldown_seconds, now
        )
        wanted = self._proportional(self.capacity_before_scale_out if cooling else desired, value)
        if wanted <= desired:
            return desired
        if not cooling:
            self.capacity_before_scale_out = desired
        self.last_scale_out, self.last_scale_in = now, None
        return wanted

    def _scale_in(self, now: int, value: float, desired: int) -> int:
        if self._in_cooldown(self.last_scale_in, self.scaling.scale_in_cooldown_seconds, now):
            return desired
        wanted = self._proportional(desired, value)
        if wanted >= desired:
            return desired
        self.last_scale_in = now
        return wanted


class ManagedScaling:
    """ECS's managed scaling of the GPU group (ecs.CapacityProvider: targetCapacity 100).

    Every minute ECS publishes CapacityProviderReservation = M / N x 100, M the instances
    that all tasks, placed or waiting in PROVISIONING, need (one GPU each: one task an
    instance), N the instances in the group. Above the target for 1 datapoint, the group's
    desired capacity rises to M, unless an instance is still within its warm-up period;
    below it for 15 datapoints, the group sheds empty instances, at most half of them a
    minute (managed termination protection keeps instances with tasks).
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/cluster-auto-scaling.html
    https://aws.amazon.com/blogs/containers/deep-dive-on-amazon-ecs-cluster-auto-scaling/
    https://github.com/aws/containers-roadmap/issues/638 (1 datapoint out, 15 in)
    """

    TARGET_CAPACITY = 100
    LOW_DATAPOINTS = 15

    def __init__(self, warmup_s: int) -> None:
        self.warmup_s = warmup_s
        self.reservations: list[float] = []

    def publish(self, needed: int, instances: int) -> None:
        if instances == 0:
            self.reservations.append(200 if needed else self.TARGET_CAPACITY)
        else:
            self.reservations.append(100 * needed / instances)

    def decide(self, now: int, needed: int, launch_times: list[int], empty: int) -> int:
        """The change to the group's size this minute, judged on the last minute published."""
        if not self.reservations:
            return 0
        if self.reservations[-1] > self.TARGET_CAPACITY:
            warming = any(now - launched < self.warmup_s for launched in launch_times)
            return 0 if warming else max(needed - len(launch_times), 1)
        low = self.reservations[-self.LOW_DATAPOINTS :]
        if len(low) == self.LOW_DATAPOINTS and all(v < self.TARGET_CAPACITY for v in low):
            return -min(empty, max(1, len(launch_times) // 2))
        return 0


@dataclass(eq=False)
class Request:
    arrived: int
    prefill_left: float
    decode_left: float


@dataclass(eq=False)
class Instance:
    launched: int
    registered: int
    task: "Task | None" = None
    cached: bool = False  # has the image and the weights from an earlier task


@dataclass(eq=False)
class Task:
    created: int
    instance: Instance | None = None
    vllm_ready: int | None = None  # answers and publishes its queue from then on
    takes_traffic: int | None = None  # healthy in the NLB from then on
    stop_at: int | None = None  # leaving the NLB; stops at this time
    waiting: deque = field(default_factory=deque)
    running: list = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return len(self.waiting) + len(self.running)

    def serving(self, now: int) -> bool:
        return self.stop_at is None and self.takes_traffic is not None and now >= self.takes_traffic


@dataclass
class Result:
    name: str
    timeline: list[dict] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)
    served: int = 0
    timed_out: int = 0
    refused: int = 0
    gpu_seconds: float = 0.0
    activities: list[tuple[int, str, int, int]] = field(default_factory=list)

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600

    def wait_percentile(self, fraction: float) -> int:
        ordered = sorted(self.waits)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0

    def minutes_to_target(self, load: Step, target: float) -> int | None:
        """Minutes from the step to the first minute whose mean in-flight requests per
        serving task is at or under ``target``; None if none is, up to the end of the peak."""
        first, last = load.before_s // MINUTE, (load.before_s + load.peak_s) // MINUTE
        for row in self.timeline[first:last]:
            if row["per_task"] <= target:
                return row["minute"] - first
        return None


class Simulation:
    def __init__(
        self,
        load: Step,
        service: Service,
        delays: Delays,
        policy: Scaling | Fixed,
        *,
        name: str,
        seed: int = 1,
    ) -> None:
        self.load, self.service, self.delays, self.policy = load, service, delays, policy
        self.rng = random.Random(seed)  # noqa: S311 (a simulation's draws, not secrets)
        self.result = Result(name)
        self.instances: list[Instance] = []
        self.tasks: list[Task] = []
        start = policy.count if isinstance(policy, Fixed) else self._settled(policy)
        self.desired = start
        for _ in range(start):  # steady state at the start: each task serving on its instance
            instance = Instance(launched=0, registered=0, cached=True)
            task = Task(created=0, instance=instance, vllm_ready=0, takes_traffic=0)
            instance.task = task
            self.instances.append(instance)
            self.tasks.append(task)
        scaled = isinstance(policy, Scaling)
        self.tracking = TargetTracking(policy) if scaled else None
        self.managed = ManagedScaling(delays.instance_warmup_s) if scaled else None
        self.samples: dict[int, list[int]] = {}  # minute -> RequestsInFlight datapoints
        self._minute_ratio = 0.0
        self._minute_arrivals = 0

    def _settled(self, scaling: Scaling) -> int:
        """Where the policy has settled after hours of the base load: at the target."""
        running = min(scaling.target_requests_per_task, self.service.max_running)
        needed = math.ceil(self.load.base_rps / self.service.requests_per_second(running))
        return min(scaling.max_tasks, max(scaling.min_tasks, needed))

    def run(self) -> Result:
        for now in range(self.load.duration_s):
            self.second(now)
        return self.result

    def second(self, now: int) -> None:
        if now and now % MINUTE == 0 and self.tracking:
            self._scale_service(now)
            self._scale_instances(now)
        self._schedule(now)
        self._arrive(now)
        for task in self.tasks:
            self._serve(task, now)
        self._stop_drained(now)
        self._publish(now)
        self._account(now)

    # Application Auto Scaling and ECS's managed scaling, once a minute.

    def _scale_service(self, now: int) -> None:
        newest = (now - self.delays.metric_delay_s) // MINUTE - 1
        window = range(max(0, newest - TargetTracking.LOW_DATAPOINTS + 1), newest + 1)
        datapoints = [self._average(minute) for minute in window]
        desired = self.tracking.decide(now, datapoints, self.desired)
        if desired != self.desired:
            self.result.activities.append((now, "tasks", self.desired, desired))
            self.desired = desired

    def _average(self, minute: int) -> float | None:
        values = self.samples.get(minute)
        return sum(values) / len(values) if values else None

    def _scale_instances(self, now: int) -> None:
        needed = sum(1 for task in self.tasks if task.instance is None) + sum(
            1 for instance in self.instances if instance.task is not None
        )
        launch_times = [instance.launched for instance in self.instances]
        empty = [i for i in self.instances if i.task is None and now >= i.registered]
        change = self.managed.decide(now, needed, launch_times, len(empty))
        self.managed.publish(needed, len(self.instances))
        if not change:
            return
        before = len(self.instances)
        for _ in range(change):
            launched = Instance(launched=now, registered=now + self.delays.instance_launch_s)
            self.instances.append(launched)
        for instance in empty[: max(0, -change)]:
            self._terminate(instance, now)
        self.result.activities.append((now, "instances", before, len(self.instances)))

    def _terminate(self, instance: Instance, now: int) -> None:
        self.result.gpu_seconds += now - instance.launched
        self.instances.remove(instance)

    # ECS: the service scheduler and task placement.

    def _schedule(self, now: int) -> None:
        live = [task for task in self.tasks if task.stop_at is None]
        for _ in range(self.desired - len(live)):
            self.tasks.append(Task(created=now))
        for task in self._to_stop(live, len(live) - self.desired, now):
            if task.instance is None or task.takes_traffic is None or now < task.takes_traffic:
                self._stop(task, now)  # not in the NLB yet: stops at once
            else:
                task.stop_at = now + self.delays.deregistration_s
        free = [i for i in self.instances if i.task is None and now >= i.registered]
        for task in [task for task in self.tasks if task.instance is None]:
            if not free:
                break
            instance = free.pop(0)
            instance.task, task.instance = task, instance
            delays = self.delays
            starting = (
                delays.model_load_cached_s
                if instance.cached
                else delays.image_pull_s + delays.model_load_s
            )
            instance.cached = True
            task.vllm_ready = now + starting
            task.takes_traffic = task.vllm_ready + self.delays.healthy_s

    def _to_stop(self, live: list[Task], count: int, now: int) -> list[Task]:
        """Tasks not placed go first, then those not serving yet, then the least busy."""
        if count <= 0:
            return []
        ordered = sorted(
            live,
            key=lambda task: (
                task.instance is not None,
                task.serving(now),
                task.in_flight,
                -task.created,
            ),
        )
        return ordered[:count]

    def _stop(self, task: Task, now: int) -> None:
        self.result.refused += task.in_flight  # cut when the task stops
        if task.instance is not None:
            task.instance.task = None
        self.tasks.remove(task)

    def _stop_drained(self, now: int) -> None:
        for task in [task for task in self.tasks if task.stop_at is not None]:
            if now >= task.stop_at:
                self._stop(task, now)

    # Requests: the NLB spreads them over the healthy tasks; vLLM queues and batches.

    def _arrive(self, now: int) -> None:
        count = _poisson(self.rng, self.load.rps(now))
        self._minute_arrivals += count
        targets = [task for task in self.tasks if task.serving(now)]
        if not targets:
            self.result.refused += count
            return
        for _ in range(count):
            request = Request(now, self.service.prompt_tokens, self.service.output_tokens)
            self.rng.choice(targets).waiting.append(request)

    def _serve(self, task: Task, now: int) -> None:
        """One second of one task: give up on requests queued too long, admit what the KV
        cache holds, then prefill and decode (the fluid model of ``Service``)."""
        service, timeout = self.service, self.delays.client_timeout_s
        while task.waiting and now - task.waiting[0].arrived >= timeout:
            task.waiting.popleft()
            self.result.timed_out += 1
            self.result.waits.append(timeout)
        while task.waiting and len(task.running) < service.max_running:
            request = task.waiting.popleft()
            self.result.waits.append(now - request.arrived)
            task.running.append(request)
        if not task.running:
            return
        prefilling = [r for r in task.running if r.prefill_left > 0]
        decoding = [r for r in task.running if r.prefill_left <= 0]
        backlog = sum(r.prefill_left for r in prefilling)
        room = service.batch_tokens - len(decoding)  # prompt tokens a step can take
        full_steps = 1000 / (service.step_ms + service.token_ms * service.batch_tokens)
        if backlog >= full_steps * room:
            steps, budget = full_steps, full_steps * room
        else:
            budget = backlog
            steps = (1000 - service.token_ms * backlog) / (
                service.step_ms + service.token_ms * len(decoding)
            )
        for request in prefilling:
            done = min(request.prefill_left, budget)
            request.prefill_left -= done
            budget -= done
        for request in decoding:
            request.decode_left -= steps
        finished = [r for r in decoding if r.decode_left <= 0]
        if finished:
            self.result.served += len(finished)
            task.running = [r for r in task.running if r.decode_left > 0]

    # What the tasks publish, and the record of the run.

    def _publish(self, now: int) -> None:
        """Each task with vLLM up writes its RequestsInFlight every QUEUE_INTERVAL_SECONDS."""
        for task in self.tasks:
            up = task.vllm_ready is not None and now >= task.vllm_ready
            if up and (now - task.created) % QUEUE_INTERVAL_SECONDS == 0:
                self.samples.setdefault(now // MINUTE, []).append(task.in_flight)

    def _account(self, now: int) -> None:
        serving = [task for task in self.tasks if task.serving(now)]
        in_flight = sum(task.in_flight for task in self.tasks)
        self._minute_ratio += in_flight / max(1, len(serving))
        if (now + 1) % MINUTE:
            return
        live = [task for task in self.tasks if task.stop_at is None]
        self.result.timeline.append(
            {
                "minute": now // MINUTE,
                "rps": self._minute_arrivals / MINUTE,
                "desired": self.desired,
                "serving": len(serving),
                "pending": len(live) - len(serving),
                "instances": len(self.instances),
                "per_task": self._minute_ratio / MINUTE,
                "waiting": sum(len(task.waiting) for task in self.tasks),
            }
        )
        self._minute_ratio, self._minute_arrivals = 0.0, 0
        if now + 1 == self.load.duration_s:
            for instance in self.instances:
                self.result.gpu_seconds += now + 1 - instance.launched


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the few tens a second simulated here."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def simulate(
    policy: Scaling | Fixed,
    *,
    load: Step | None = None,
    service: Service | None = None,
    delays: Delays | None = None,
    name: str = "",
    seed: int = 1,
) -> Result:
    """One run of ``load`` (a step from 5 to 40 requests/s by default) under ``policy``."""
    return Simulation(
        load or Step(), service or Service(), delays or Delays(), policy, name=name, seed=seed
    ).run()


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    load = Step(
        args.base_rps,
        args.peak_rps,
        args.before_minutes * MINUTE,
        args.peak_minutes * MINUTE,
        args.after_minutes * MINUTE,
    )
    service = Service(
        args.step_ms,
        args.token_ms,
        args.batch_tokens,
        args.kv_cache_tokens,
        args.prompt_tokens,
        args.output_tokens,
    )
    delays = Delays(
        args.metric_delay,
        args.instance_launch,
        args.instance_warmup,
        args.image_pull,
        args.model_load,
        args.model_load_cached,
        args.healthy,
        args.deregistration,
        args.client_timeout,
    )
    scaling = Scaling(
        args.min_tasks, args.max_tasks, args.target, args.scale_out_cooldown, args.scale_in_cooldown
    )
    at_target = service.requests_per_second(min(args.target, service.max_running))
    sized = math.ceil(args.peak_rps / at_target)
    _print_service(service, load, args.target, at_target, sized)
    policies: list[tuple[str, Scaling | Fixed]] = [
        (f"fixed {count}", Fixed(count)) for count in args.fixed
    ]
    policies.append((f"auto {scaling.min_tasks}-{scaling.max_tasks}", scaling))
    if args.sized and sized > scaling.max_tasks:
        policies.append((f"auto {scaling.min_tasks}-{sized}", replace(scaling, max_tasks=sized)))
    results = [
        Simulation(load, service, delays, policy, name=name, seed=args.seed).run()
        for name, policy in policies
    ]
    _print_summary(results, load, args.target)
    _print_timeline(results)
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    option = parser.add_argument
    service, delays, scaling, load = Service(), Delays(), Scaling(), Step()
    option("--base-rps", type=float, default=load.base_rps)
    option("--peak-rps", type=float, default=load.peak_rps)
    option("--before-minutes", type=int, default=load.before_s // MINUTE)
    option("--peak-minutes", type=int, default=load.peak_s // MINUTE)
    option("--after-minutes", type=int, default=load.after_s // MINUTE)
    option("--step-ms", type=float, default=service.step_ms, help="an engine step's fixed cost")
    option("--token-ms", type=float, default=service.token_ms, help="cost per token in a step")
    option("--batch-tokens", type=int, default=service.batch_tokens)
    option("--kv-cache-tokens", type=int, default=service.kv_cache_tokens)
    option("--prompt-tokens", type=int, default=service.prompt_tokens)
    option("--output-tokens", type=int, default=service.output_tokens)
    option("--metric-delay", type=int, default=delays.metric_delay_s, help="seconds")
    option("--instance-launch", type=int, default=delays.instance_launch_s, help="seconds")
    option("--instance-warmup", type=int, default=delays.instance_warmup_s, help="seconds")
    option("--image-pull", type=int, default=delays.image_pull_s, help="seconds")
    option("--model-load", type=int, default=delays.model_load_s, help="seconds")
    option("--model-load-cached", type=int, default=delays.model_load_cached_s, help="seconds")
    option("--healthy", type=int, default=delays.healthy_s, help="seconds to NLB healthy")
    option("--deregistration", type=int, default=delays.deregistration_s, help="seconds")
    option("--client-timeout", type=int, default=delays.client_timeout_s, help="seconds")
    option("--min-tasks", type=int, default=scaling.min_tasks)
    option("--max-tasks", type=int, default=scaling.max_tasks)
    option("--target", type=float, default=scaling.target_requests_per_task)
    option("--scale-out-cooldown", type=int, default=scaling.scale_out_cooldown_seconds)
    option("--scale-in-cooldown", type=int, default=scaling.scale_in_cooldown_seconds)
    option("--fixed", type=_counts, default=[1, 4], help="fixed desired counts to compare")
    option(
        "--no-sized",
        dest="sized",
        action="store_false",
        help="leave out the run with max tasks sized for the peak",
    )
    option("--seed", type=int, default=1)
    return parser.parse_args(argv)


def _counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _print_service(
    service: Service, load: Step, target: float, at_target: float, sized: int
) -> None:
    saturated = service.requests_per_second(service.max_running)
    print(
        f"One task (g5.2xlarge, 8B bf16; assumptions): {service.prompt_tokens} prompt + "
        f"{service.output_tokens} output tokens a request, at most {service.max_running} "
        f"running (KV cache {service.kv_cache_tokens:,} tokens).\n"
        f"  it completes {at_target:.2f} requests/s with {target:g} in flight (the target), "
        f"{saturated:.2f}/s at most; a single request decodes at "
        f"{1000 / (service.step_ms + service.token_ms):.0f} tokens/s.\n"
        f"  Load: {load.base_rps:g} requests/s, {load.peak_rps:g}/s from minute "
        f"{load.before_s // MINUTE} for {load.peak_s // MINUTE} minutes, then "
        f"{load.base_rps:g}/s; the peak needs {sized} tasks at the target.\n"
    )


def _print_summary(results: list[Result], load: Step, target: float) -> None:
    print(
        f"{'run':<12} {'back under target':>18} {'p95 wait':>9} {'max wait':>9} "
        f"{'served':>8} {'timed out':>10} {'refused':>8} {'GPU-hours':>10}"
    )
    for result in results:
        minutes = result.minutes_to_target(load, target)
        back = "never" if minutes is None else f"{minutes} min"
        print(
            f"{result.name:<12} {back:>18} {result.wait_percentile(0.95):>8}s "
            f"{max(result.waits, default=0):>8}s {result.served:>8,} {result.timed_out:>10,} "
            f"{result.refused:>8,} {result.gpu_hours:>10.2f}"
        )
    print(
        "\n(back under target: minutes from the step to the first minute with in-flight "
        "requests per serving task at or under the target; waits: arrival to "
        "admission into vLLM's batch, a timed-out request counting its timeout)\n"
    )


def _print_timeline(results: list[Result]) -> None:
    """One line a minute: the load, then per run tasks serving+pending, instances, and
    in-flight requests per serving task (the minute's mean)."""
    print("Timeline, per run: tasks serving+pending, instances, in flight per serving task")
    header = f"{'min':>4} {'req/s':>6} " + " ".join(f"| {r.name:<17}" for r in results)
    print(header)
    for rows in zip(*(result.timeline for result in results), strict=True):
        cells = " ".join(
            f"| {row['serving']:>2}+{row['pending']:<2} {row['instances']:>3} "
            f"{row['per_task']:>7.1f} "
            for row in rows
        )
        print(f"{rows[0]['minute']:>4} {rows[0]['rps']:>6.1f} {cells}")


if __name__ == "__main__":
    sys.exit(main())
