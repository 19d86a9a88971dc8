"""Words and numbers for people: message catalogs in English and Japanese, and locale formatting by Babel.

Every sentence the report shows comes from a catalog (``poccheck/locales/<lang>.yaml``), looked up by key. Code
that decides *what* to say (the analysis, the grader) returns :class:`Message` values, a key and its values, so
that *how* it is said is chosen only when the report is rendered. A catalog entry is a ``str.format`` template
whose fields may carry a format spec understood by :class:`Formatter` (``{share:pct}``, ``{cost:money}``), or a
mapping of plural forms (``one``/``other``, chosen by Babel's plural rules for the language from ``count``).
"""

from __future__ import annotations

import datetime as _dt
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml
from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal, format_percent
from markupsafe import Markup, escape

LANGUAGES = ("en", "ja")
DEFAULT_LANGUAGE = "en"
DASH = "–"


@dataclass(frozen=True)
class Message:
    """Something to say, as a catalog key and the values to fill in; rendered in the reader's language."""

    key: str
    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, key: str, **values: Any) -> Message:
        return cls(key, values)

    def __str__(self) -> str:
        """The English text (for the console, logs and tests)."""
        return Translator("en").text(self)


class CatalogError(KeyError):
    """A key missing from a catalog: a bug, never shown as an empty string."""


@cache
def catalog(language: str) -> dict[str, str | dict[str, str]]:
    """The flattened catalog of ``language``: dotted keys to templates (or plural forms)."""
    if language not in LANGUAGES:
        raise ValueError(f"no catalog for language {language!r}; available: {', '.join(LANGUAGES)}")
    text = resources.files("poccheck").joinpath("locales", f"{language}.yaml").read_text(encoding="utf-8")
    flat: dict[str, str | dict[str, str]] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping) and set(value) <= {"zero", "one", "two", "few", "many", "other"}:
                flat[name] = {str(k): str(v) for k, v in value.items()}
            elif isinstance(value, Mapping):
                walk(name + ".", value)
            else:
                flat[name] = str(value)

    walk("", yaml.safe_load(text) or {})
    return flat


class Formatter(string.Formatter):
    """``str.format`` with locale-aware format specs; in HTML mode every value is escaped unless it is Markup.

    Specs: ``pct`` (25.3%), ``pct0`` (25%), ``int`` (1,234), ``dec1``/``dec2`` (fixed decimals), ``num`` (up to
    three significant decimals), ``money`` (the report's currency), ``seconds``, ``bytes``, ``params`` (1.6B),
    ``msg`` (a nested :class:`Message`).
    """

    def __init__(self, translator: Translator, html: bool) -> None:
        self.translator = translator
        self.html = html

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Message):
            text: str = self.translator.text(value, html=self.html)
            return text
        if isinstance(value, Markup):
            return str(value)
        text = self.translator.format_value(value, format_spec)
        return str(escape(text)) if self.html else text


class Translator:
    """Catalog lookups and number formatting for one language (and, for money, one currency)."""

    def __init__(self, language: str = DEFAULT_LANGUAGE, currency: str = "USD") -> None:
        self.language = language
        self.locale = Locale.parse(language)
        self.currency = currency
        self.entries = catalog(language)

    # ---- catalog -------------------------------------------------------------------------------------------
    def template(self, key: str, count: float | None = None) -> str:
        try:
            entry = self.entries[key]
        except KeyError:
            raise CatalogError(f"message {key!r} is missing from the {self.language} catalog") from None
        if isinstance(entry, dict):
            form = str(self.locale.plural_form(abs(count))) if count is not None else "other"
            return entry.get(form, entry["other"])
        return entry

    def text(self, message: Message, html: bool = False) -> str:
        values = dict(message.values)
        template = self.template(message.key, values.get("count"))
        return Formatter(self, html).vformat(template, (), values)

    def __call__(self, key: str, **values: Any) -> Markup:
        """For templates: the catalog text for ``key`` as safe HTML, every value escaped."""
        return Markup(self.text(Message(key, values), html=True))

    def has(self, key: str) -> bool:
        return key in self.entries

    # ---- numbers ---------------------------------------------------------------------------------------------
    def format_value(self, value: Any, spec: str = "") -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return DASH
        if not spec:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return str(value)
            return self.number(value)
        formats = {
            "pct": lambda v: self.percent(v),
            "pct0": lambda v: self.percent(v, digits=0),
            "int": lambda v: self.integer(v),
            "dec1": lambda v: self.decimal(v, 1),
            "dec2": lambda v: self.decimal(v, 2),
            "num": lambda v: self.number(v),
            "money": lambda v: self.money(v),
            "seconds": lambda v: self.seconds(v),
            "bytes": lambda v: self.bytes(v),
            "params": lambda v: self.parameters(v),
        }
        if spec in formats:
            return str(formats[spec](value))
        return format(value, spec)

    def percent(self, value: float | None, digits: int = 1) -> str:
        if value is None or not math.isfinite(value):
            return DASH
        pattern = "#,##0%" if digits == 0 else "#,##0." + "0" * digits + "%"
        return str(format_percent(value, pattern, locale=self.locale))

    def integer(self, value: float | None) -> str:
        if value is None or not math.isfinite(value):
            return DASH
        return str(format_decimal(round(value), "#,##0", locale=self.locale))

    def decimal(self, value: float | None, digits: int) -> str:
        if value is None or not math.isfinite(value):
            return DASH
        return str(format_decimal(value, "#,##0." + "0" * digits, locale=self.locale))

    def number(self, value: float | None) -> str:
        if value is None or not math.isfinite(value):
            return DASH
        return str(format_decimal(value, "#,##0.###", locale=self.locale))

    def money(self, value: float | None) -> str:
        """Whole units for yen and for large amounts, cents otherwise."""
        if value is None or not math.isfinite(value):
            return DASH
        if self.currency == "JPY" or abs(value) >= 1000:
            return str(
                format_currency(round(value), self.currency, format="¤#,##0", locale=self.locale, currency_digits=False)
            )
        return str(format_currency(value, self.currency, locale=self.locale))

    def seconds(self, value: float | None) -> str:
        if value is None or not math.isfinite(value):
            return DASH
        if value < 1:
            return self.template("units.milliseconds").format(value=self.integer(value * 1000))
        return self.template("units.seconds").format(value=self.decimal(value, 2))

    def bytes(self, value: float | None) -> str:
        if not value:
            return DASH
        for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
            if value < 1024 or unit == "TiB":
                return f"{self.integer(value)} {unit}" if unit == "B" else f"{self.decimal(value, 1)} {unit}"
            value /= 1024
        return str(value)

    def parameters(self, value: float | None) -> str:
        """A model size as engineers write it in both languages: 270M, 1.60B."""
        if not value:
            return DASH
        if value >= 1e9:
            return f"{self.decimal(value / 1e9, 2)}B"
        return f"{self.integer(value / 1e6)}M"

    def count(self, value: int | None) -> str:
        """A parameter count or an item count: 1.60B, 270M or 1,234."""
        if value is None:
            return DASH
        return self.parameters(value) if value >= 1_000_000 else self.integer(value)

    def datetime(self, moment: _dt.datetime) -> str:
        return str(format_datetime(moment, "medium", locale=self.locale))
