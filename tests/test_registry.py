"""The op registry (harness/ops.py): each op declared once, and nothing else branches on op names.

The reference engine, the verdict, the case loader, the search and the runner dispatch on the
spec; only the registry and the adapters' call tables (one expression per op and variant) name
ops. An unknown op or option raises naming the valid ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from harness import ops as O
from harness import vocab as V
from harness.errors import HarnessInputError

ROOT = Path(__file__).resolve().parent.parent
#: Modules that must not name an op: they dispatch on the registry.
DISPATCHERS = ["reference.py", "verdict.py", "cases.py", "search.py", "runner.py", "known.py", "policy.py",
               "options.py", "cli.py", "records.py", "isolation.py", "plugin.py", "cache.py", "repro.py"]


def test_every_op_is_declared_once_with_its_mathematics():
    assert list(O.OPS) == V.OP_NAMES
    for name, spec in O.OPS.items():
        assert spec.name == name and spec.labels in ("none", "dense", "sparse")
        assert callable(spec.formula) and callable(spec.limit) and callable(spec.condition) and spec.doc
        assert spec.grad_outputs[0] == "d_logits"


@pytest.mark.parametrize("module", DISPATCHERS)
def test_no_per_op_branch_outside_the_registry(module):
    src = (ROOT / "harness" / module).read_text()
    code = re.sub(r'""".*?"""', "", src, flags=re.DOTALL)  # docstrings may show examples
    named = [op for op in V.OP_NAMES if re.search(rf"[\"']{op}[\"']", code)]
    assert not named, f"harness/{module} names {named}: dispatch on harness.ops instead"


def test_unknown_op_and_option_raise_naming_the_valid_ones():
    with pytest.raises(HarnessInputError, match="unknown op 'softmaxx'.*valid: softmax, log_softmax"):
        O.get("softmaxx")
    with pytest.raises(HarnessInputError, match=r"op 'softmax' takes no option 'label_smoothing'.*field 'label_smoothing'"
                       "|field 'label_smoothing'.*op 'softmax' takes no option"):
        O.validate_options("softmax", {"label_smoothing": 0.1})
    O.validate_options("softmax", {})  # no option: fine


def test_label_kinds_decide_the_ops_a_case_runs():
    assert O.fits("none") == ["softmax", "log_softmax", "logsumexp"]
    assert O.fits("dense") == ["softmax", "log_softmax", "logsumexp", "softmax_cross_entropy"]
    assert O.fits("sparse") == ["softmax", "log_softmax", "logsumexp", "sparse_softmax_cross_entropy"]


def test_output_shapes_follow_the_spec():
    for name, spec in O.OPS.items():
        shapes = O.output_shapes(name, "forward", (2, 3, 5), 1)
        assert shapes == {"out": (2, 5) if spec.reduces else (2, 3, 5)}
        assert O.output_shapes(name, "grad", (2, 3, 5), 1) == {n: (2, 3, 5) for n in spec.grad_outputs}
        assert O.cotangent("pattern", name, (2, 3, 5), 1).shape == shapes["out"]
        np.testing.assert_array_equal(O.cotangent("mean", name, (2, 3, 5), 1), 1 / np.prod(shapes["out"]))
