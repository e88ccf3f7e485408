"""SWEEP.md's words that do not need a sweep to check."""

from detimb.sweeps.report import machines_note


def test_a_sweep_trained_on_two_machines_says_so_and_one_machine_says_nothing():
    assert machines_note({"AMD EPYC, 2 cores": 6}) == []
    assert machines_note({"AMD EPYC, 2 cores": 4, "not recorded": 2}) == []  # unknown: no claim either way
    note = machines_note({"AMD EPYC, 2 cores": 4, "Intel Xeon, 2 cores": 1})
    assert len(note) == 1 and note[0].startswith("**Trained on 2 machines** (AMD EPYC, 2 cores: 4 runs;"
                                                 " Intel Xeon, 2 cores: 1 run)")
