"""Smoke test: bench/recipes_bench.py scores every recipe on the same folds and prices CV."""

from __future__ import annotations

import re

from core.recipes import RECIPES
from tests.helpers import run_bench


def test_the_recipes_table_has_every_recipe_and_the_cost_of_cross_validation() -> None:
    done = run_bench(
        "recipes_bench.py", "--size", "smoke", "--data", "data/sample.json", "--no-write"
    )
    assert done.returncode == 0, done.stderr
    for name in RECIPES:
        (line,) = [row for row in done.stdout.splitlines() if row.startswith(f"| `{name}` |")]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert re.fullmatch(r"0\.\d{3} ± 0\.\d{3}", cells[1]), line
        assert 0.0 < float(cells[4]) < 0.5  # Brier of real probabilities
        tuned, at_half = (tuple(map(float, cells[i].split(" / "))) for i in (6, 7))
        assert all(0.0 <= v <= 1.0 for v in (*tuned, *at_half)), line
        expected = r"— \(baseline\)" if name == "nb-bow" else r"[+-]0\.\d{3} \(.+ to .+\): .+"
        assert re.fullmatch(expected, cells[-1]), line
    assert "over all 400 requests" in done.stdout
    (cost,) = [row for row in done.stdout.splitlines() if "`--cv 3`" in row]
    assert re.search(r"\d+\.\d\d× \(target ≤ 6×: (met|\*\*not met\*\*)\)", cost)
