"""Every config in conf/examples/ passes ``gorox check``, or fails only because it uses
components that are not built yet, or because it is a template naming the user's own app (which
``gorox check`` imports). An example that breaks for any other reason (a typo, a property that
changed name, a sign that does not exist, an app of ours that no longer imports) fails here."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from ..conftest import ROOT, gorox_cmd

EXAMPLES = ROOT / "conf" / "examples"
# One example per role of the product; a missing file is a missing role.
ROLES = {
    "web_server.conf": "static files",
    "python_app.conf": "a Python app (a handlet of apps/)",
    "reverse_proxy.conf": "http1Proxy + http1Backend",
    "fastcgi.conf": "fcgiProxy",
    "tcp_proxy.conf": "tcpsMesher + tcpsProxy",
    "udp_dns.conf": "udpsMesher",
    "socks5.conf": "socksServer",
    "echo.conf": "echoServer",
    "asgi_app.conf": "asgi",
    "tls_sni.conf": "TLS with SNI",
    "rate_limit_access.conf": "rate limiting and access control",
}


# Modules that template examples name as "your app" (asgi_app.conf, flask.conf); every other
# example's app is importable from the repository.
TEMPLATE_APPS = ("myproject", "myshop")


def test_every_role_has_an_example() -> None:
    assert {p.name for p in EXAMPLES.glob("*.conf")} >= set(ROLES)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.conf")))
def test_example_checks_or_is_only_waiting_for_components(name: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # The base is the repository, as for `gorox check` run there: apps/ is imported from it.
    base = ROOT
    text = (EXAMPLES / name).read_text()
    certs = sorted(set(re.findall(r'%baseDir \+ "/certs/([\w.-]+)\.(?:crt|key)"', text)))
    if certs:
        # The example names certificate files under <base>/certs/: make real ones for the check.
        import trustme
        base = tmp_path / "base"
        (base / "certs").mkdir(parents=True)
        ca = trustme.CA()
        for cert_name in certs:
            cert = ca.issue_cert(cert_name)
            cert.cert_chain_pems[0].write_to_path(str(base / "certs" / f"{cert_name}.crt"))
            cert.private_key_pem.write_to_path(str(base / "certs" / f"{cert_name}.key"))
    result = subprocess.run(gorox_cmd("check", "-config", str(EXAMPLES / name), "-base", str(base)),
                            cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=60)
    if result.returncode == 0:
        assert result.stdout.splitlines() == [f"{EXAMPLES / name}: " + result.stdout.split(": ", 1)[1].strip()]
        assert " ok (" in result.stdout
        return
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith(f"{EXAMPLES / name}: "), result.stderr
    problems = [line.strip() for line in lines[1:]]
    assert problems, result.stderr
    # Templates name the user's own app (gorox check imports apps): that module is not here.
    others = [p for p in problems if "is not implemented yet" not in p
              and not any(f"no module named {m} " in p for m in TEMPLATE_APPS)]
    assert not others, "problems other than components not built yet:\n" + "\n".join(others)


def test_the_web_server_example_serves(gorox) -> None:  # type: ignore[no-untyped-def]
    """The static-files example, on a free port, answers as its comments say."""
    import httpx

    text = (EXAMPLES / "web_server.conf").read_text()
    assert '.address = ":8080"' in text
    text = text.replace("{", "{{").replace("}", "}}").replace('.address = ":8080"', '.address = "127.0.0.1:{port}"')
    g = gorox(text, files={"www/index.html": "<h1>" + "welcome " * 200 + "</h1>", "www/files/a.txt": "a"})
    with httpx.Client() as client:
        home = client.get(g.url("/"), headers={"accept-encoding": "gzip"})
        assert home.status_code == 200 and home.headers.get("content-encoding") == "gzip"
        assert home.text.startswith("<h1>welcome")
        listing = client.get(g.url("/files/"))
        assert listing.status_code == 200 and "a.txt" in listing.text
        assert client.get(g.url("/favicon.ico")).headers["content-type"].startswith("image/")
        assert client.get(g.url("/nope")).status_code == 404
    assert (g.base / "data" / "log" / "site.access.log").exists()
