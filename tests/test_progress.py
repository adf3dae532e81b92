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


def test_eta_weighs_the_kinds_left_by_their_cost_so_far(monkeypatch):
    """A run of 90 cheap items (0.1 s each) then 10 slow ones (10 s each, say ONNX Runtime's
    invariance checks at the end of a default run). By the mean rate, after the 90 cheap ones
    the ETA is a ninth of the time so far; weighed by kind, it is unknown-kind items at the mean
    cost until one slow item is done, then exact."""
    now = [0.0]
    monkeypatch.setattr(P.time, "monotonic", lambda: now[0])
    kinds = ["cheap"] * 90 + ["slow"] * 10
    plain, weighed = P.Progress(100, stream=io.StringIO()), P.Progress(100, stream=io.StringIO(), kinds=kinds)
    for i in range(90):
        now[0] += 0.1
        plain.update(i + 1, {"pass": i + 1})
        weighed.update(i + 1, {"pass": i + 1}, "cheap", 0.1)
    assert abs(plain.eta(90) - 1.0) < 1e-9  # 9 s for 90: 10 more take 1 s, by the mean rate
    assert abs(weighed.eta(90) - 1.0) < 1e-9  # no slow item done yet: the mean cost of what is done
    now[0] += 10.0
    plain.update(91, {"pass": 91})
    weighed.update(91, {"pass": 91}, "slow", 10.0)
    assert abs(plain.eta(91) - 19.0 / 91 * 9) < 1e-9  # 1.9 s: wrong by a factor of 47
    assert abs(weighed.eta(91) - 90.0) < 1e-9  # 9 slow items left at 10 s each: the truth
    for i in range(92, 101):
        now[0] += 10.0
        weighed.update(i, {"pass": i}, "slow", 10.0)
    assert weighed.eta(100) == 0.0 and abs(now[0] - 109.0) < 1e-9  # 90 s, as it said at 91


def test_the_live_bar_shows_the_weighed_eta(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(P.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    p = P.Progress(3, stream=out, live=True, kinds=["a", "b", "b"])
    now[0] = 1.0
    p.update(1, {"pass": 1}, "a", 1.0)
    now[0] = 61.0
    p.update(2, {"pass": 2}, "b", 60.0)  # one more b: 60 s
    assert p.eta(2) == 61.0 * 60 / 61
    p.close()
    assert "ETA 1m00s" in out.getvalue()
