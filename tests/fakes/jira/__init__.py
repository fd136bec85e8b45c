"""A fake Jira Cloud REST API v3 on 127.0.0.1 for the Jira connector's tests.

::

    from tests.fakes.jira import FakeJira, SEARCH

    with FakeJira(index_lag=180, pagination="offset") as jira:
        jira.add_project("FOO")
        issue = jira.add_issue("FOO", summary="Broken build")
        jira.throttle(on_request=2, path=SEARCH, retry_after=7)
        ...  # point the connector at jira.url with jira.user.email / "jira-api-token"
        assert jira.searches[0].criteria.date("updated", ">=") == ...

Modules: :mod:`.server` (routing, auth, limits), :mod:`.search` (the enhanced search),
:mod:`.controls` (the test API), :mod:`.model`, :mod:`.jql` (syntax), :mod:`.criteria`
(meaning), :mod:`.dates`, :mod:`.render`, :mod:`.paging`, :mod:`.limits`, :mod:`.endpoints`.
"""

from .criteria import Criteria, DateCondition
from .dates import jql_literal, parse_timestamp
from .jql import JqlError, Query, parse
from .model import Comment, Issue, IssueState, Project, User
from .paging import PageCursor
from .search import SearchCall
from .server import BULKFETCH, COUNT, GONE, SEARCH, FakeJira

__all__ = [
    "BULKFETCH",
    "COUNT",
    "GONE",
    "SEARCH",
    "Comment",
    "Criteria",
    "DateCondition",
    "FakeJira",
    "Issue",
    "IssueState",
    "JqlError",
    "PageCursor",
    "Project",
    "Query",
    "SearchCall",
    "User",
    "jql_literal",
    "parse",
    "parse_timestamp",
]
