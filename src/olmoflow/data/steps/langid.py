"""Offline language ID with lingua (restricted language set, low-accuracy mode: fast)."""

from __future__ import annotations

from pydantic import Field, field_validator

from olmoflow.data.steps.base import Doc, Filter, StepConfig, set_attr
from olmoflow.errors import require


class LangIdConfig(StepConfig):
    language: str = "ENGLISH"
    min_score: float = Field(default=0.65, ge=0.0, le=1.0)
    languages: list[str] = Field(
        default=["ENGLISH", "GERMAN", "FRENCH", "SPANISH", "PORTUGUESE", "ITALIAN", "DUTCH", "RUSSIAN",
                 "CHINESE", "JAPANESE", "ARABIC", "HINDI"],
        description="candidate languages (a small set keeps lingua fast)",
    )
    low_accuracy: bool = True
    max_chars: int = Field(default=2000, ge=50, description="score only the first N characters")

    @field_validator("language", "languages")
    @classmethod
    def _known(cls, v: str | list[str]) -> str | list[str]:
        """Unknown language names fail while the recipe is validated, not in a worker mid-run."""
        try:
            import lingua
        except ImportError:  # setup() reports the missing extra
            return v
        for name in [v] if isinstance(v, str) else v:
            if not hasattr(lingua.Language, name.upper()):
                raise ValueError(f"unknown language {name!r} (lingua names, e.g. ENGLISH, GERMAN)")
        return v


class LangId(Filter):
    """Keep documents whose lingua confidence for ``language`` is at least ``min_score``."""

    Config = LangIdConfig

    def setup(self) -> None:
        lingua = require("lingua", "data")
        cfg: LangIdConfig = self.cfg  # type: ignore[assignment]
        langs = {getattr(lingua.Language, n.upper()) for n in cfg.languages} | {
            getattr(lingua.Language, cfg.language.upper())
        }
        builder = lingua.LanguageDetectorBuilder.from_languages(*sorted(langs, key=lambda x: x.name))
        if cfg.low_accuracy:
            builder = builder.with_low_accuracy_mode()
        self._det = builder.build()
        self._target = getattr(lingua.Language, cfg.language.upper())

    def filter(self, doc: Doc) -> tuple[bool, str | None]:
        cfg: LangIdConfig = self.cfg  # type: ignore[assignment]
        score = float(self._det.compute_language_confidence(doc["text"][: cfg.max_chars], self._target))
        set_attr(doc, f"langid_{cfg.language.lower()}", round(score, 4))
        if score >= cfg.min_score:
            return True, None
        return False, f"lang_{cfg.language.lower()}_below_{cfg.min_score}"
