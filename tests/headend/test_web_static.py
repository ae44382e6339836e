"""The operator interface's files as the head-end serves them: security headers, no way out of the
static folder, and nothing fetched from outside the project (every module a page imports exists)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from twisted.web.test.requesthelper import DummyRequest

from headend.web import STATIC, UiFiles

JS = STATIC / "js"


def _get(path: bytes) -> tuple[DummyRequest, bytes]:
    request = DummyRequest(path.split(b"/"))
    request.uri = b"/ui/" + path
    body = UiFiles().render_GET(request)
    return request, body


def _header(request: DummyRequest, name: bytes) -> bytes | None:
    values = request.responseHeaders.getRawHeaders(name)
    return values[0] if values else None


def test_the_shell_is_served_with_a_same_origin_content_security_policy() -> None:
    request, body = _get(b"")
    assert b'<nav aria-label="Main"' in body
    assert _header(request, b"content-type") == b"text/html; charset=utf-8"
    policy = _header(request, b"content-security-policy") or b""
    assert b"default-src 'self'" in policy and b"script-src 'self'" in policy
    assert b"frame-ancestors 'none'" in policy
    assert _header(request, b"x-content-type-options") == b"nosniff"


def test_modules_are_served_as_javascript() -> None:
    request, body = _get(b"js/app.js")
    assert _header(request, b"content-type") == b"text/javascript; charset=utf-8"
    assert b"export" in body or b"import" in body


def test_ui_without_a_slash_is_redirected() -> None:
    request = DummyRequest([])
    UiFiles().render_GET(request)
    assert request.responseCode == 302
    assert _header(request, b"location") == b"/ui/"


@pytest.mark.parametrize("path", [b"../__init__.py", b"js/../../__init__.py", b"..", b"js",
                                  b"missing.html", b"js/%2e%2e/app.js", b"a\\b.js"])  # fmt: skip
def test_nothing_outside_the_static_files_is_served(path: bytes) -> None:
    request, body = _get(path)
    assert request.responseCode == 404, path
    assert body == b"no such page\n"


def test_a_file_of_an_unknown_kind_is_not_served(tmp_path: Path) -> None:
    (tmp_path / "secret.db").write_bytes(b"data")
    (tmp_path / "page.html").write_text("<p>hi</p>")
    request = DummyRequest([b"secret.db"])
    assert UiFiles(tmp_path).render_GET(request) == b"no such page\n"
    assert UiFiles(tmp_path).render_GET(DummyRequest([b"page.html"])) == b"<p>hi</p>"


EXTERNAL = re.compile(r"""(?:src|href|from|import\(|url\()\s*=?\s*["']?(?:https?:)?//""", re.I)


def test_nothing_is_fetched_from_outside_the_project() -> None:
    files = [p for p in STATIC.rglob("*") if p.suffix in {".html", ".js", ".css"}]
    assert len(files) >= 5
    for path in files:
        text = path.read_text()
        assert not EXTERNAL.search(text), (path, EXTERNAL.search(text))


IMPORT = re.compile(r"""(?:^|\s)(?:import|export)\s[^;]*?from\s+["'](\.[^"']+)["']""", re.M)


def test_every_module_imported_exists() -> None:
    for path in JS.rglob("*.js"):
        for target in IMPORT.findall(path.read_text()):
            assert (path.parent / target).resolve().is_file(), (path.name, target)


def test_every_page_the_router_names_exists() -> None:
    routes = re.findall(r'\["[^"]+", "([a-z_-]+)", "[^"]+", "[a-z.]+", (?:true|false)\]',
                        (JS / "app.js").read_text())  # fmt: skip
    assert "overview" in routes and len(routes) >= 10
    missing = sorted({name for name in routes if not (JS / "pages" / f"{name}.js").is_file()})
    assert not missing, f"pages named in app.js without a module: {missing}"
