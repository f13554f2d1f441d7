"""The service against its own OpenAPI schema (schemathesis): requests the schema allows
(positive), requests it forbids (negative) and its explicit examples (the served dataset's ids)
never get a server error, and every answer matches the schema (status code, content type,
body)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode, checks  # noqa: E402

from streamrec.serve.app import create_app  # noqa: E402

#: the operations the schema must have (a new endpoint is fuzzed without editing the test)
OPERATIONS = {"GET /users/{user_id}/recommendations", "POST /recommendations", "POST /events",
              "GET /items/{item_id}", "GET /items/{item_id}/similar", "GET /users",
              "GET /users/{user_id}", "GET /health", "GET /metrics", "POST /admin/reload"}
CHECKS = [checks.not_a_server_error, checks.response_schema_conformance,
          checks.content_type_conformance, checks.status_code_conformance]


@pytest.fixture(scope="module")
def api_schema(service_system, tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    app = create_app(service_system, events=tmp_path_factory.mktemp("fuzz") / "events.jsonl")
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def fuzz(strategy, seen: set[int]) -> None:
    """Up to 25 cases of one operation; the status codes seen are added to ``seen``."""

    @given(case=strategy)
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        seen.add(case.call_and_validate(checks=CHECKS).status_code)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_never_answers_with_a_server_error(api_schema, mode):
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= OPERATIONS
    statuses: dict[str, set[int]] = {}
    for op in operations:
        strategy = op.as_strategy(generation_mode=mode)
        if mode is GenerationMode.POSITIVE:
            strategy = st.one_of(strategy, *op.get_strategies_from_examples())
        try:
            fuzz(strategy, statuses.setdefault(op.label, set()))
        except Unsatisfiable:  # nothing to get wrong (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE
            statuses.pop(op.label)
    assert len(statuses) >= (len(OPERATIONS) if mode is GenerationMode.POSITIVE else 6)
    assert all(code < 500 for codes in statuses.values() for code in codes), statuses
    if mode is GenerationMode.POSITIVE:  # the examples reach the real answers, not only 4xx
        assert 200 in statuses["GET /users/{user_id}/recommendations"]
        assert 201 in statuses["POST /events"] or 200 in statuses["POST /events"]
