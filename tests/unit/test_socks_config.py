"""socksServer configuration: an open proxy on a reachable address is said out loud."""

from __future__ import annotations

import logging

import pytest

import hemi.contrib._all  # noqa: F401  (registers the signs)
from hemi.core.stage import Dirs, Stage


@pytest.mark.parametrize("props, warned", [
    ('.address = "0.0.0.0:1080"', True),
    ('.address = "0.0.0.0:1080" .users = ["a": "b"]', False),
    ('.address = "0.0.0.0:1080" .allow = ("10.0.0.0/8")', False),
    ('.address = "127.0.0.1:1080"', False),
])
def test_open_proxy_warning(tmp_path, caplog, props: str, warned: bool) -> None:  # type: ignore[no-untyped-def]
    stage = Stage.from_text(f'stage {{ socksServer "s" {{ {props} }} }}', Dirs.under(str(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="hemi.net.socks"):
        stage.configure()
    assert ("open proxy" in caplog.text) is warned
