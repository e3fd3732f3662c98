"""A pytest plugin: fail tests whose machines report an unhandled error.

Enable it in ``conftest.py`` with ``pytest_plugins = ["asyncmachine_trio.pytest_plugin"]``
(or ``-p asyncmachine_trio.pytest_plugin``). Then:

* the fixture ``am_no_unhandled_errors`` (opt-in per test) fails the test when
  a machine reported an unhandled error while it ran; it yields the list of
  reports (see :func:`asyncmachine_trio.testing.error_reports`);
* ``--am-fail-unhandled`` (or ``am_fail_unhandled = true`` in the ini file)
  does the same for every test; a test that raises in handlers on purpose
  opts out with ``@pytest.mark.am_unhandled_errors_ok``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testing import ErrorReport, error_reports

__all__ = ["am_no_unhandled_errors"]

_MARK = "am_unhandled_errors_ok"


def pytest_addoption(parser: pytest.Parser) -> None:
    help_ = "fail every test whose machines report an unhandled error (asyncmachine_trio)"
    parser.addoption("--am-fail-unhandled", action="store_true", default=False, help=help_)
    parser.addini("am_fail_unhandled", help_, type="bool", default=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{_MARK}: this test's machines may report unhandled errors")


_REPORTS = pytest.StashKey[list[ErrorReport]]()


def _check(reports: list[ErrorReport]) -> None:
    unhandled = [r for r in reports if r.kind == "unhandled"]
    if unhandled:
        text = "\n\n".join(r.message for r in unhandled)
        pytest.fail(f"{len(unhandled)} unhandled machine error(s):\n{text}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    # checked at the end of the test's call: the test fails (not its teardown)
    result = yield
    reports = item.stash.get(_REPORTS, None)
    if reports is not None:
        _check(reports)
    return result


@pytest.fixture
def am_no_unhandled_errors(request: pytest.FixtureRequest) -> Iterator[list[ErrorReport]]:
    """Fail the test if a machine reports an unhandled error while it runs.

    Yields the reports made so far (every kind, see ``testing.error_reports``).
    """
    with error_reports() as reports:
        request.node.stash[_REPORTS] = reports
        yield reports


@pytest.fixture(autouse=True)
def _am_fail_unhandled(request: pytest.FixtureRequest) -> Iterator[None]:
    config = request.config
    on = config.getoption("--am-fail-unhandled") or config.getini("am_fail_unhandled")
    if (
        not on
        or request.node.get_closest_marker(_MARK) is not None
        or "am_no_unhandled_errors" in request.fixturenames
    ):
        yield
        return
    with error_reports() as reports:
        request.node.stash[_REPORTS] = reports
        yield
