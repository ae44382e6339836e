"""schemathesis over the OpenAPI document a real ``amr headend`` serves at
``GET /api/v1/openapi.json``: for every operation, requests the document allows and requests it
forbids, as an admin. No operation may answer 5xx, and a response the document describes must be
as it says. First, the requests schemathesis found answering 500 (fixed since), each asked
again.

Left out: ``POST /api/v1/logout`` and ``PATCH /api/v1/operators/{operator_id}``, which would end
the run's own session or take the admin's rights away half-way through (both are covered by
tests/headend/api/test_admin.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.result import Err

from tests.support.api import ApiFailure

from .process import Headend, running_headend
from .profiles import examples

pytestmark = pytest.mark.integration

VALID, INVALID = examples(15), examples(10)  # requests per operation


@pytest.fixture(scope="module")
def headend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Headend]:
    with running_headend(tmp_path_factory.mktemp("openapi")) as running:
        yield running


BIG = "9" * 30
# (method, path, body): each answered 500 before its fix
WERE_SERVER_ERRORS = [
    ("GET", "/api/v1/overview?since=INF", None),  # inf reached the JSON reply
    ("GET", "/api/v1/meters/m1/consumption?period=day&count=Inf", None),  # int(inf)
    ("GET", "/api/v1/commands?vend_id=1e300", None),  # an id past 64 bits
    ("GET", f"/api/v1/vends/{BIG}", None),
    ("GET", f"/api/v1/tariffs/1/versions/{BIG}", None),
    ("POST", "/api/v1/vends/quote", {"account_id": 2**71, "energy_wh": 4014}),
    ("DELETE", "/api/v1/api-keys/%C2%B9", None),  # '\u00b9'.isdigit() but int() refuses it
    ("GET", f"/api/v1/operators?offset={BIG}", None),  # an OFFSET past 64 bits
    ("GET", f"/api/v1/audit?offset={BIG}", None),
    ("GET", f"/api/v1/api-keys?offset={BIG}", None),
    ("POST", "/api/v1/keys", {"id": "k32", "key_hex": "AB" * 16, "sgc": 123456,  # 128 bits
                              "key_revision": 1, "key_type": 2, "algorithm": "sta", "dkga": 2}),
    ("POST", "/api/v1/keys", {"id": "k3", "key_hex": "AB" * 8, "sgc": 123456, "key_revision": 1,
                              "key_type": 2, "algorithm": "sta", "dkga": 3}),
    ("POST", "/api/v1/keys", {"id": "k4", "key_hex": "AB" * 8, "sgc": 123456, "key_revision": 1,
                              "key_type": 2, "algorithm": "sta", "dkga": 4}),  # DKGA04 is 160 bits
]  # fmt: skip


@pytest.mark.reliability("bad input", "requests that answered 500 before their fix answer 4xx")
def test_requests_that_were_server_errors_are_refused(
    headend: Headend, reliability: dict[str, object]
) -> None:
    answers: dict[str, object] = {}
    for method, path, body in WERE_SERVER_ERRORS:
        try:
            answers[f"{method} {path} {body}"] = headend.api.call(method, path, body)
        except ApiFailure as refused:
            message = refused.body["error"]["message"] if isinstance(refused.body, dict) else ""
            answers[f"{method} {path} {body}"] = (refused.status, message)
    wrong = {k: v for k, v in answers.items()
             if not (isinstance(v, tuple) and 400 <= v[0] < 500 and v[1])}  # fmt: skip
    assert not wrong, f"not refused with a 4xx that says why: {wrong}"
    reliability.update(requests=len(answers), refused=len(answers) - len(wrong))


@pytest.mark.reliability("bad input", "a DKGA04 vending key (160 bits) can be imported")
def test_a_dkga04_vending_key_is_imported(headend: Headend) -> None:
    """The key field took 16 or 32 hex digits: a DKGA04 key (40) was refused, a 32-digit one
    taken and then failed inside (a 500)."""
    key = {"id": "sgc123456-dkga04", "key_hex": "0123456789ABCDEF" * 2 + "01234567",
           "sgc": 123456, "key_revision": 1, "key_type": 2, "algorithm": "sta", "dkga": 4}  # fmt: skip
    created = headend.api.post("/api/v1/keys", key)
    assert created["dkga"] == 4 and "key_hex" not in created
    listed = headend.api.get("/api/v1/keys?limit=500")["items"]
    assert {"id": "sgc123456-dkga04", "dkga": 4} in [
        {"id": k["id"], "dkga": k["dkga"]} for k in listed
    ]


@pytest.mark.reliability("bad input", "schemathesis over the OpenAPI document of a running "
                         "head-end: no 5xx on any operation, responses as documented")  # fmt: skip
def test_no_operation_answers_a_server_error(
    headend: Headend, reliability: dict[str, object]
) -> None:
    loaded = schemathesis.openapi.from_url(f"{headend.base}/api/v1/openapi.json")
    schema = loaded.exclude(method="POST", path="/api/v1/logout").exclude(
        method="PATCH", path="/api/v1/operators/{operator_id}"
    )
    headers = {"Authorization": f"Bearer {headend.api.token}"}
    failures: dict[str, str] = {}
    requests = operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # the document is one schemathesis cannot read
            failures[f"the document: {result.err()}"] = "invalid"
            continue
        operation = result.ok()
        operations += 1
        for mode, count in ((GenerationMode.POSITIVE, VALID), (GenerationMode.NEGATIVE, INVALID)):

            @settings(max_examples=count, deadline=None, phases=[Phase.generate], database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: schemathesis.Case[Any]) -> None:
                nonlocal requests
                requests += 1
                response = case.call(base_url=headend.base, headers=headers, timeout=30)
                case.validate_response(response,
                                       checks=[not_a_server_error, response_schema_conformance])  # fmt: skip

            try:
                call()
            except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                failures[f"{operation.method.upper()} {operation.path} ({mode.value})"] = str(exc)
    reliability.update(operations=operations, requests=requests, server_errors=len(failures),
                       examples=f"{VALID} valid + {INVALID} invalid per operation")  # fmt: skip
    assert headend.process.poll() is None, "the head-end died"
    assert not failures, "\n\n".join(f"{k}:\n{v[:2000]}" for k, v in failures.items())
    assert not [line for line in headend.log if "Traceback" in line], "".join(headend.log[-80:])
