"""`--host`/`--port` of the service mains: flags win over settings, absent flags leave them be."""

from __future__ import annotations

import pytest

from services.notifier.settings import NotifierSettings
from shared.serve import parse_bind

pytestmark = pytest.mark.unit


def test_flags_override_the_settings_and_absent_ones_do_not(tmp_path):
    settings = NotifierSettings(data_dir=tmp_path, host="10.0.0.5", port=9003)

    assert parse_bind(["--port", "0"], service="notifier", env_prefix="NOTIFIER_").address(settings) == ("10.0.0.5", 0)
    assert parse_bind(["--host", "0.0.0.0"], service="notifier", env_prefix="NOTIFIER_").address(settings) == (
        "0.0.0.0",
        9003,
    )
    assert parse_bind([], service="notifier", env_prefix="NOTIFIER_").address(settings) == ("10.0.0.5", 9003)


def test_an_unknown_flag_stops_with_usage(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_bind(["--bind", "x"], service="notifier", env_prefix="NOTIFIER_")

    assert stopped.value.code == 2
    assert "expertmatch notifier" in capsys.readouterr().err
