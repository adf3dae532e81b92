"""The conformance suite: one test per (framework, device, dtype, mode, op, check, case).

Parametrized by the harness plugin from its options (--harness-framework, --harness-dtype,
--harness-cases, ...); each test writes one result record and passes, fails, skips, or xfails
for a documented known discrepancy.
"""


def test_conformance(conformance_item, harness_session, request):
    harness_session.check(conformance_item, request)
