"""The CLI's progress (harness/progress.py): plain lines with the count, the statuses and an
ETA when the output is not a terminal; a live bar (rich) with the same figures when it is."""

import io

from harness import progress as P


def test_plain_lines_every_n_results_with_eta(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(P.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    p = P.Progress(40, stream=out, every=10)
    now[0] = 10.0
    p.update(10, {"pass": 9, "known": 1})  # 10 of 40 in 10 s: 30 more take 30 s
    now[0] = 20.0
    p.update(15, {"pass": 14, "known": 1})  # not a multiple of 10, and under a minute: no line
    now[0] = 30.0
    p.update(20, {"pass": 18, "fail": 1, "known": 1})  # 20 of 40 in 30 s: ETA 30 s
    now[0] = 95.0
    p.update(21, {"pass": 19, "fail": 1, "known": 1})  # a minute since the last line: one more
    p.close()
    assert out.getvalue().splitlines() == ["... 10/40 pass 9 known 1 ETA 0m30s",
                                           "... 20/40 pass 18 known 1 fail 1 ETA 0m30s",
                                           "... 21/40 pass 19 known 1 fail 1 ETA 1m26s"]


def test_quiet_prints_no_progress():
    out = io.StringIO()
    p = P.Progress(10, stream=out, every=1, quiet=True)
    for n in range(1, 10):
        p.update(n, {"pass": n})
    assert out.getvalue() == ""


def test_live_bar_on_a_terminal_shows_counts_and_prints_failures_above_it():
    out = io.StringIO()
    p = P.Progress(4, stream=out, live=True)
    assert p._bar is not None
    p.update(2, {"pass": 1, "fail": 1})
    p.print("FAIL torch-cpu-float16-eager-softmax-forward-extreme/nan: nan_expected_finite")
    p.update(4, {"pass": 3, "fail": 1})
    p.close()
    text = out.getvalue()
    assert "FAIL torch-cpu-float16" in text and "4/4" in text and "pass 3 fail 1" in text


def test_eta_text():
    assert P.eta_text(None) == "ETA -" and P.eta_text(59.6) == "ETA 1m00s" and P.eta_text(3725) == "ETA 1h02m"
