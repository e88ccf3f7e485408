"""The loader wait: timed per interval, and one warning naming the knob when it is long."""

import json
import time

from detimb.data.coco import CocoDetection
from detimb.engine.step_clock import IntervalTimes, StepClock
from detimb.engine.trainer import Trainer


def _slow(items, seconds):
    for item in items:
        time.sleep(seconds)
        yield item


def test_the_wait_is_the_time_blocked_on_the_next_batch():
    clock = StepClock()
    for _ in clock.batches(_slow(range(4), 0.05)):
        time.sleep(0.01)  # the "step"
    times = clock.lap(4)
    assert 0.045 <= times.data_time <= 0.09
    assert times.sec_per_iter >= 0.06 and times.data_time < times.sec_per_iter
    assert 0.5 < times.waiting_fraction < 1.0


def test_one_warning_after_the_first_interval_and_only_above_ten_percent():
    clock = StepClock()
    slow = IntervalTimes(sec_per_iter=0.1, data_time=0.05)
    clock.lap(1)  # the first interval: workers start up, no warning
    assert clock.advice(slow, 1, 0) is None
    clock.lap(1)
    assert clock.advice(IntervalTimes(sec_per_iter=0.1, data_time=0.009), 2, 0) is None
    message = clock.advice(slow, 2, 4)
    assert message is not None and "50%" in message and "data.num_workers (now 4)" in message
    assert clock.advice(slow, 3, 4) is None  # once per run


def test_training_on_a_slow_dataset_logs_data_time_and_warns(tiny_config, tmp_path, monkeypatch, caplog):
    read = CocoDetection.load_image

    def slow_read(self, info):
        time.sleep(0.15)
        return read(self, info)

    monkeypatch.setattr(CocoDetection, "load_image", slow_read)
    cfg = tiny_config("faster_rcnn", train={"schedule": {"max_iters": 4}, "log_interval": 1, "eval_interval": 100},
                      evaluation={"enabled": False})
    with caplog.at_level("WARNING", logger="detimb"):
        Trainer(cfg, tmp_path / "run", progress=False).train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert len(train_rows) == 4
    assert all(0.25 <= r["data_time"] <= r["sec_per_iter"] for r in train_rows)  # 2 images x 0.15 s a batch
    warnings = [r.message for r in caplog.records if "waited for data" in r.message]
    assert len(warnings) == 1 and "Fix: raise data.num_workers (now 0)" in warnings[0]
