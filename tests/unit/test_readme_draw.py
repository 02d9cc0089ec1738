"""The README's "Recomputing a draw" recipe, run as written against draws made by the domain."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

from services.rewards.domain import draws

README = Path(__file__).resolve().parents[2] / "README.md"


def recipe() -> str:
    text = README.read_text()
    section = text[text.index("### Recomputing a draw") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README shows the recipe as a python block"
    return match.group(1)


def document(winners: list[str], entries: list[str], seed: str) -> dict[str, object]:
    return {
        "seed": seed,
        "seed_sha256": draws.commitment(seed),
        "entries": entries,
        "entries_digest": draws.entries_digest(entries),
        "winners": winners,
        "winner_count": len(winners),
    }


@pytest.mark.parametrize("k", [1, 7, 40])
def test_readme_recipe_recomputes_a_unique_winner_draw(
    k: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = draws.new_seed()
    entries = draws.frozen([f"u{i}" for i in range(30)] + draws.ticket_entries("heavy", 5))
    doc = document(draws.draw(seed, entries, k, repeat_winners=False), entries, seed)
    assert len(recipe().strip().splitlines()) <= 11
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(doc)))
    exec(compile(recipe(), "README.md", "exec"), {})


def test_readme_recipe_rejects_a_tampered_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = draws.new_seed()
    entries = draws.frozen(f"u{i}" for i in range(30))
    winners = draws.draw(seed, entries, 5, repeat_winners=False)
    doc = document([*winners[:-1], next(e for e in entries if e not in winners)], entries, seed)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(doc)))
    with pytest.raises(AssertionError):
        exec(compile(recipe(), "README.md", "exec"), {})
