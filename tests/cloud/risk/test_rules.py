"""Scoring rules: the packaged default loads, a bad file fails naming the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.risk.model import Band
from cloud.risk.rules import RulesError, ScoringRules, load_rules

DEFAULT = Path(__file__).parents[3] / "cloud" / "risk" / "rules.toml"


def test_packaged_default_loads(rules: ScoringRules) -> None:
    assert rules.version == "lw-risk-2.3"
    assert rules.bands.band(0.0) is Band.LOW
    assert rules.bands.band(rules.bands.medium) is Band.MEDIUM
    assert rules.bands.band(rules.bands.high) is Band.HIGH
    assert rules.bands.band(100.0) is Band.CRITICAL
    assert load_rules(DEFAULT) == rules


def test_rules_are_frozen(rules: ScoringRules) -> None:
    with pytest.raises(ValueError, match="frozen"):
        rules.version = "x"  # type: ignore[misc]


def test_a_changed_file_changes_the_model(tmp_path: Path) -> None:
    text = DEFAULT.read_text(encoding="utf-8")
    path = tmp_path / "rules.toml"
    path.write_text(
        text.replace('version = "lw-risk-2.3"', 'version = "custom-2"').replace(
            "points_per_event = 35.0", "points_per_event = 5.0"
        ),
        encoding="utf-8",
    )
    custom = load_rules(path)
    assert custom.version == "custom-2"
    assert custom.tamper.points_per_event == 5.0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("high = 45.0", "high = 20.0", r"bands: high must be above medium \(25.0\)"),
        (
            "weight = 40.0",
            "weight = 140.0",
            r"utilization_vs_baseline\.weight: .*less than or equal to 100",
        ),
        ("floor = 0.4", "floor = 0.4\ncolour = 1", r"capacity_warning\.colour: Extra inputs"),
        ('version = "lw-risk-2.3"', "", r"version: Field required"),
        (
            "unreliable = 0.5",
            "unreliable = 0.95",
            r"completeness: unreliable must be below reliable",
        ),
        ("full = 0.35", "full = 0.95", r"utilization_vs_baseline: full must be below ok"),
        (
            "weight = 25.0\nok = 0.5",
            "weight = 25.0\nok = 10.0",
            r"silence: ok and full must differ",
        ),
        ("medium = 25.0", 'medium = "a lot"', r"bands\.medium: Input should be a valid number"),
    ],
)
def test_bad_file_names_key_and_reason(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = DEFAULT.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(RulesError, match=message) as caught:
        load_rules(path)
    assert str(path) in str(caught.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("version = \n", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid TOML"):
        load_rules(path)
    with pytest.raises(RulesError, match="cannot read scoring rules"):
        load_rules(tmp_path / "absent.toml")
