"""What the notifier's delivery log says of an endpoint: never a credential a subscriber put in its URL."""

from __future__ import annotations

import pytest

from services.notifier.delivery import loggable_url


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("https://hooks.example.com/expertmatch", "https://hooks.example.com/expertmatch"),
        ("https://hooks.example.com/in?token=s3cr3t&x=1", "https://hooks.example.com/in"),
        ("https://bot:hunter2@hooks.example.com:8443/in#frag", "https://hooks.example.com:8443/in"),
        ("http://[2001:db8::1]:8080/hook?key=k", "http://[2001:db8::1]:8080/hook"),
    ],
)
def test_a_logged_endpoint_keeps_where_it_is_and_drops_what_may_be_a_secret(url, logged):
    assert loggable_url(url) == logged
