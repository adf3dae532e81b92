"""The harness's names: dtypes, ops, checks, modes, devices and suites.

Imports nothing, so that the pytest plugin can declare its options (whose help lists these)
without importing numpy: the plugin loads into every pytest run of an environment the package
is installed in, and must cost those runs nothing. `harness.dtypes` and `harness.ops` hold the
definitions behind the names and check that they agree with these lists.
"""

DTYPE_NAMES = ["float16", "bfloat16", "float32", "float64"]
OP_NAMES = ["softmax", "log_softmax", "logsumexp", "softmax_cross_entropy", "sparse_softmax_cross_entropy"]
#: The invariance checks (harness.invariance): variants of the forward call compared bit for bit.
INVARIANCE_CHECKS = ("batch_invariance", "determinism", "eager_vs_jit", "permutation")
#: The checks that compare one call's values with the exact reference (what `harness search` and
#: `harness.exact` take).
VALUE_CHECKS = ["forward", "grad", "grad2"]
CHECKS = [*VALUE_CHECKS, *INVARIANCE_CHECKS]
#: eager: op by op; jit: compiled as users compile across shapes; jit_static: a compiler's
#: fixed-shape program where the framework's jit is not one already (torch.compile with
#: dynamic=False), run on a sample of the cases (Adapter.sampled_modes) unless asked for by name.
MODES = ["eager", "jit", "jit_static"]
DEVICES = ["cpu", "gpu"]

#: Named selections of the built-in library. `quick` keeps the families that probe special
#: values and conditioning (what CI runs on every commit); `default` is every case but those
#: tagged `large`; `full` adds the large vocabularies and the long batch.
SUITES: dict[str, str] = {
    "quick": "seed, extreme, soft_labels, integer_labels and offset, and the cases tagged 'quick' of the other "
             "families (a sample of each option family and of the invariance checks; none of random and shapes); "
             "eager forward and grad in one of float16 and bfloat16 and one of float32 and float64 per case "
             "(in all four on the long row), "
             "the compiled modes' in one of bfloat16 and float32 (JAX's and Keras-on-JAX's eager in "
             "one of the two eager dtypes, torch's jit on half the cases: their first calls compile per "
             "shape), grad2 and the invariance checks in every dtype, unless dtypes are given, and not "
             "torch's sampled jit_static, unless modes are given; one timed call, unless timing repetitions "
             "are given",
    "default": "every case except those tagged 'large'",
    "full": "every case, the large vocabularies and the long batch included",
}
QUICK_FAMILIES = ("seed", "extreme", "soft_labels", "integer_labels", "offset")
#: The dtypes the quick suite runs the compiled modes in: forward and grad of each case in one of
#: them (by a digest of its id, runner.compiled_dtype), grad2 and the invariance checks (a few
#: cases each) in both: compiling is most of a cold run's time (one program per op,
#: options, rank and dtype, and for torch per class count: its first calls were 537 of the quick
#: suite's 1505 recorded worker-seconds with each case compiled in both), and every framework,
#: mode, dtype, op and check stays covered (eager runs all four dtypes, QUICK_EAGER_DTYPES). bfloat16,
#: where compilers upcast, and float32, the default. The default and full suites compile every
#: dtype on every case. The quick suite leaves out torch's jit_static, whose outputs equal jit's
#: bit for bit on the CPU (1743 of 1743 of its forward and grad results).
QUICK_JIT_DTYPES = ("bfloat16", "float32")
#: The dtypes the quick suite runs eager forward and grad in: each case in one of each group (by
#: a digest of its id and the group, runner.eager_dtypes), a half precision and a single or double
#: one, grad2 and the invariance checks in all four; so every framework, op, check and dtype keeps
#: about half the cases. JAX's eager dispatch compiles each primitive per shape and dtype (JAX and
#: Keras on JAX, eager, were 722 of the quick suite's 2933 test-seconds with all four on every
#: case, on a day this machine ran 1.5x slower than the README's figures), and `.ci/run` had grown
#: to 29 min against its 20. The default and full suites run every dtype on every case.
QUICK_EAGER_DTYPES = (("float16", "bfloat16"), ("float32", "float64"))
# Both samples are thinned further for the modes whose first calls compile per shape
# (Adapter.quick_thinning, runner.thinned): torch's jit compiles half the cases (1.6 s per
# program and class count), JAX's eager and Keras on JAX run each case in one of its two eager
# dtypes (a compile per primitive, shape and dtype). 292 of the quick suite's 906 worker-seconds
# of first calls and 2037 of its 16702 results at feac26b, no known id and no framework, mode,
# op, check and dtype left out; `.ci/run` had grown past its 20 minutes (23 min at feac26b).

#: The tag of the cases the quick suite runs eager forward and grad in every dtype, unsampled: the
#: long row (extreme/long_row, 4100 classes), there for the paths and accumulators a kernel picks
#: per dtype on a row that long (float16's sums inexact past 2048; a long-row path whose
#: accumulator is float32 whatever the input). Sampled, it ran in bfloat16 and float32 only: no
#: float64 long row was in the quick suite, and a float64 row of 1024 classes or more summed in
#: float32 passed it. 130 more results of the 8 frameworks, eager: about 8 worker-seconds cold.
QUICK_EVERY_DTYPE_TAG = "long_row"
#: The timed repetitions of each call in the quick suite, unless --timing-reps is given: one.
#: The quick suite checks conformance; its timings are of one warm call (the default and full
#: suites take the median of 3). The repetitions' outputs are never judged, and the three of
#: them were a fifth of the quick suite's worker-seconds (435 of 2008 on this machine, cold).
QUICK_TIMING_REPS = 1
#: Cases of other families that the quick suite takes too: a sample of each option family.
QUICK_TAG = "quick"
