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
