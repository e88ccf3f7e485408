"""timings.jsonl: one row per invocation, rewritten as runs finish, so a stopped sweep keeps its time."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from detimb.sweeps.timings import TIMINGS_FILE, invocation_name, machine, machines, read_rows, record, totals
from detimb.utils import usable_cores


def test_an_invocation_rewrites_its_own_row_and_keeps_the_others(tmp_path):
    # a row as sweeps wrote them before rows had names: kept, and counted as concluded
    (tmp_path / TIMINGS_FILE).write_text(json.dumps({"training": 100.0, "bookkeeping": 4.0}) + "\n")
    first, second = "2026-12-04T03:00:00.000000+00:00", "2026-12-04T04:00:00.000000+00:00"
    record(tmp_path, first, training_s=50.0, total_s=52.0, concluded=False)
    record(tmp_path, first, training_s=80.04, total_s=83.0, concluded=False)  # a later run finished
    record(tmp_path, second, training_s=20.0, total_s=21.5, concluded=True)
    rows = read_rows(tmp_path / TIMINGS_FILE)
    here = machine()
    assert rows == [{"training": 100.0, "bookkeeping": 4.0},
                    {"started": first, "training": 80.0, "bookkeeping": 3.0, "concluded": False, "machine": here},
                    {"started": second, "training": 20.0, "bookkeeping": 1.5, "concluded": True, "machine": here}]
    # by hand: training 100 + 80 + 20 = 200, outside it 4 + 3 + 1.5 = 8.5, share 8.5 / 208.5
    assert totals(tmp_path) == {"training": 200.0, "bookkeeping": 8.5, "invocations": 3, "stopped": 1,
                                "bookkeeping_share": 0.0408}


def test_no_rows_no_time(tmp_path):
    assert totals(tmp_path) == {"training": 0.0, "bookkeeping": 0.0, "invocations": 0, "stopped": 0,
                                "bookkeeping_share": 0.0}


def test_a_name_is_the_utc_time_it_was_taken():
    before = datetime.now(timezone.utc)
    name = datetime.fromisoformat(invocation_name())
    assert name.tzinfo == timezone.utc and before <= name <= datetime.now(timezone.utc)


def test_a_damaged_line_is_left_out_with_a_warning_naming_it(tmp_path, caplog):
    log = tmp_path / TIMINGS_FILE
    log.write_text('{"training": 10.0, "bookkeeping": 1.0}\n{"training": 5\n["a list"]\n{"training": "ten", '
                   '"bookkeeping": 1}\n')
    assert read_rows(log) == [{"training": 10.0, "bookkeeping": 1.0}]
    assert f"{log}: line(s) 2, 3, 4 are not rows of seconds" in caplog.text
    assert totals(tmp_path)["training"] == 10.0


def test_each_row_names_its_machine_and_older_rows_say_they_did_not(tmp_path):
    here = machine()
    assert here.endswith(f", {usable_cores()} cores") and len(here) > len(f", {usable_cores()} cores")
    log = tmp_path / TIMINGS_FILE
    older = {"training": 1.0, "bookkeeping": 1.0}
    log.write_text(json.dumps(older) + "\n" + json.dumps({**older, "started": "a", "machine": "Xeon, 8 cores"}) + "\n")
    record(tmp_path, "b", training_s=2.0, total_s=3.0, concluded=True)
    record(tmp_path, "c", training_s=2.0, total_s=3.0, concluded=True)
    # first seen first, each once
    assert machines(tmp_path) == ["not recorded", "Xeon, 8 cores", here]
    assert machines(tmp_path / "no sweep here") == []

