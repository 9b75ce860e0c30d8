"""Scorecards: versioned YAML documents of rules over a call's events and summary metrics.

A scorecard is validated once when imported (unknown keys rejected, one-line errors) and stored with its
text and hash; `name` + `version` identify it for good, so every score names exactly the rules it was made
with, and importing a changed document under an existing version is refused. Rule kinds:

- `per_event`: points for each matching event (`event` type, field equality in `match`, `min_duration_s`,
  `min_confidence`),
  optionally the first `free` occurrences free and the total capped at `cap` points (absolute);
- `threshold`: points once when a summary metric (`agent.talk_ratio`, a dotted path) compares true
  against `value` (`op`: gt ge lt le eq ne); a metric the call lacks or left null makes the rule not
  applicable, never a deduction;
- `calm_under_anger`: a credit when the customer was angry (emotion events labelled angry, or the
  customer shouting) and the agent stayed calm (no angry agent emotion, no agent shouting).

Points are negative for deductions and positive for credits (good listening, quick responses, calm tone).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_SCORECARD = Path(__file__).with_name("scorecards") / "default.yaml"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ScorecardError(ValueError):
    """A scorecard document that cannot be used; the message is one line."""


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", title="Stable rule id (evidence and reviews refer to it)")
    title: str = Field(min_length=1, title="What the rule checks, in English")
    title_zh: str | None = Field(None, title="The same in Chinese (zh-CN)")
    points: float = Field(title="Points per occurrence (per_event) or once; negative = deduction, positive = credit")


class PerEventRule(_Rule):
    kind: Literal["per_event"]
    event: Literal["talk_over", "dead_air", "speech", "emotion"]
    match: dict[str, str | int | float | bool] = Field(default_factory=dict, title="Field equality conditions")
    min_duration_s: float = Field(0.0, ge=0, title="Only events at least this long (end - start)")
    min_confidence: float = Field(
        0.0,
        ge=0,
        le=1,
        title="Only events whose `confidence` is at least this (talk-overs: how sure the station's speech model was"
        " of the newcomer; dead air: how sure Silero was that nobody spoke); an event without one (an older station)"
        " counts",
    )
    free: int = Field(0, ge=0, title="The first N occurrences cost nothing")
    cap: float | None = Field(None, gt=0, title="Largest total (absolute) this rule can add or take away")


class ThresholdRule(_Rule):
    kind: Literal["threshold"]
    metric: str = Field(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$", title="Dotted path into the call summary")
    op: Literal["gt", "ge", "lt", "le", "eq", "ne"]
    value: float | bool


class CalmUnderAngerRule(_Rule):
    kind: Literal["calm_under_anger"]


Rule = Annotated[PerEventRule | ThresholdRule | CalmUnderAngerRule, Field(discriminator="kind")]


class LowConfidence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["exclude", "downweight", "score"] = Field(
        "downweight", title="Calls whose quality flags say the analysis is unsure: left out, weighted less, or as any"
    )
    weight: float = Field(0.5, ge=0, le=1, title="Weight of a low-confidence call in averages (downweight)")


class Scorecard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    version: int = Field(ge=1)
    title: str = ""
    base: float = Field(100.0, title="Score before any rule")
    min_score: float = 0.0
    max_score: float = 100.0
    low_confidence: LowConfidence = LowConfidence()
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Scorecard:
        ids = [r.id for r in self.rules]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate rule ids: {', '.join(dup)}")
        if self.min_score > self.max_score:
            raise ValueError("min_score is above max_score")
        return self

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


@functools.lru_cache(maxsize=64)
def parse(text: str) -> Scorecard:
    """Validate a YAML scorecard; ScorecardError with a one-line reason otherwise. Cached by text: scoring
    reads the stored document for every call, and a (frozen) scorecard never changes under its text."""
    try:
        data: Any = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader (the C one when built)
    except yaml.YAMLError as exc:
        raise ScorecardError(f"not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ScorecardError("a scorecard is a YAML mapping with name, version and rules")
    try:
        return Scorecard.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ScorecardError(f"{where}: {first['msg']}" if where else first["msg"]) from None


def load(path: str | Path) -> tuple[Scorecard, str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScorecardError(f"cannot read {path}: {exc.strerror}") from None
    return parse(text), text


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
