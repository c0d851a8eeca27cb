"""The ASGI app runner's host tasks (hemi/web/asgi/runner.py): an idle host that is cancelled
ends instead of holding up the loop's shutdown, and the runner goes on with a new host."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from hemi.web.asgi.runner import SUSPENDED, AppRunner

from ..conftest import ROOT


def test_a_loop_with_idle_hosts_shuts_down() -> None:
    """asyncio.run cancels every task left and waits for them: idle hosts must end (an app
    embedding hemi, or a worker leaving through an error, must not hang at exit)."""
    script = textwrap.dedent("""
        import asyncio
        from hemi.web.asgi.runner import AppRunner

        async def app():
            await asyncio.sleep(0)   # waits once: handed to a host, which then idles

        async def main():
            runner = AppRunner(asyncio.get_running_loop(), "t")
            ended = asyncio.get_running_loop().create_future()
            runner.start(app(), ended.set_result)
            await ended
            # no runner.close(): asyncio.run's clean-up meets the idle host

        asyncio.run(main())
        print("exited")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "exited"


def test_a_late_cancel_of_an_idle_host_costs_only_that_host() -> None:
    async def main() -> list:
        loop = asyncio.get_running_loop()
        runner = AppRunner(loop, "t")

        async def app(tag: str) -> str:
            await asyncio.sleep(0)
            return tag

        results: list = []
        first = loop.create_future()
        assert runner.start(app("a"), first.set_result) is SUSPENDED
        results.append(await first)
        (host,) = runner.idle
        host.task.cancel()               # e.g. a cancel scope's delivery, after its app ended
        await asyncio.sleep(0.01)
        assert host.task.done() and host not in runner.idle and host not in runner.hosts
        second = loop.create_future()
        assert runner.start(app("b"), second.set_result) is SUSPENDED
        results.append(await second)      # a new host drove it
        assert runner.busy == 0
        await runner.close()
        return results

    assert asyncio.run(main()) == [None, None]
