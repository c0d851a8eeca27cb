"""A stage built from config text inside a test's own event loop (for tests that drive
components directly rather than through a gorox process)."""

from __future__ import annotations

from pathlib import Path

import hemi.contrib._all  # noqa: F401  (registers the signs)
from hemi.core.stage import Dirs, Stage


async def make_stage(tmp_path: Path, components: str) -> Stage:
    """Configure, prepare and start ``stage { <components> }`` with its dirs under tmp_path."""
    stage = Stage.from_text(f"stage {{ {components} }}", Dirs.under(str(tmp_path)))
    await stage.launch()
    return stage


async def stage_with_handlet(sign: str, cls: type, text: str) -> Stage:
    """Start the stage of config ``text`` (a whole ``stage { }``) in which ``sign`` names the
    test's handlet class ``cls``; the sign is registered only while the config is read."""
    import tempfile

    from hemi.core.registry import registry

    registry.add(sign, "handlet", cls)
    try:
        stage = Stage.from_text(text, Dirs.under(tempfile.mkdtemp()))
        stage.configure()
    finally:
        registry.remove(sign)
    stage.prepare()
    await stage.start()
    return stage
