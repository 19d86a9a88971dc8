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
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, SupportsFloat

import yaml
from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal, format_percent, format_scientific, get_currency_precision
from markupsafe import Markup, escape

LANGUAGES = ("en", "ja")
DEFAULT_LANGUAGE = "en"
DASH = "–"

Real = int | float | Decimal
SCIENTIFIC = "0.###E0"
SCIENTIFIC_FROM = Decimal(10) ** 15  # more digits are noise; Babel rounds in a 28-digit context and fails far past
MILLION, BILLION = Decimal(10) ** 6, Decimal(10) ** 9


def as_decimal(value: object) -> Decimal | None:
    """``value`` as a Decimal with the digits a person would read: a float's shortest form (0.1, not
    0.1000000000000000055...), every digit of an int however long (no int-to-str digit limit on the way). None for
    None, NaN and anything that is not a number."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):  # bool too
        number = Decimal(value)
    elif isinstance(value, SupportsFloat):  # float, and number types such as numpy's scalars
        try:
            number = Decimal(repr(float(value)))
        except (TypeError, ValueError, OverflowError):  # a __float__ that fails
            return None
    else:
        return None
    return None if number.is_nan() else number


def _unsigned_zero(number: Decimal, places: int) -> Decimal:
    """``number``, or plain 0 when it shows as zero at ``places`` decimals (no "-0" or "-0.00")."""
    return Decimal(0) if number.quantize(Decimal(1).scaleb(-places)).is_zero() else number


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
    # Every formatter takes any number (an int of any length, a float including ±0, ±inf and NaN, a Decimal) and
    # returns text: NaN and None are "no value" (a dash); infinities are a dash too, except in :meth:`number`
    # (which shows what a model wrote: ∞); a magnitude of 10^15 or more is written in scientific notation.
    def format_value(self, value: Any, spec: str = "") -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return DASH
        if not spec:
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
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

    def _fixed(self, value: object, pattern: str, places: int) -> str:
        """A finite number by a Babel decimal ``pattern`` showing at most ``places`` decimals."""
        number = as_decimal(value)
        if number is None or number.is_infinite():
            return DASH
        if abs(number) >= SCIENTIFIC_FROM:
            return self.scientific(number)
        return str(format_decimal(_unsigned_zero(number, places), pattern, locale=self.locale))

    def scientific(self, value: Real | None) -> str:
        """Four significant digits and a power of ten, as the locale writes them: 1.2E46, 1E-300."""
        number = as_decimal(value)
        if number is None:
            return DASH
        if number.is_infinite() or number.is_zero():
            return str(format_decimal(abs(number) if number.is_zero() else number, "#,##0", locale=self.locale))
        return str(format_scientific(number, SCIENTIFIC, locale=self.locale))

    def percent(self, value: Real | None, digits: int = 1) -> str:
        number = as_decimal(value)
        if number is None or number.is_infinite():
            return DASH
        if abs(number) * 100 >= SCIENTIFIC_FROM:
            return str(format_percent(number, SCIENTIFIC + "%", locale=self.locale))
        pattern = "#,##0%" if digits == 0 else "#,##0." + "0" * digits + "%"
        return str(format_percent(_unsigned_zero(number, digits + 2), pattern, locale=self.locale))

    def integer(self, value: Real | None) -> str:
        return self._fixed(value, "#,##0", 0)

    def decimal(self, value: Real | None, digits: int) -> str:
        return self._fixed(value, "#,##0." + "0" * digits, digits)

    def number(self, value: Real | None) -> str:
        """Up to three decimals (1,234.5); ±∞; scientific from 10^15 and for a value that three decimals would
        show as 0 although it is not (1E-300)."""
        number = as_decimal(value)
        if number is None:
            return DASH
        if number.is_infinite():
            return str(format_decimal(number, "#,##0", locale=self.locale))
        if not number.is_zero() and (abs(number) >= SCIENTIFIC_FROM or _unsigned_zero(number, 3).is_zero()):
            return self.scientific(number)
        return self._fixed(number, "#,##0.###", 3)

    def money(self, value: Real | None) -> str:
        """Whole units for yen and for large amounts, cents otherwise."""
        number = as_decimal(value)
        if number is None or number.is_infinite():
            return DASH
        if abs(number) >= SCIENTIFIC_FROM:
            return str(
                format_currency(
                    number, self.currency, format="¤" + SCIENTIFIC, locale=self.locale, currency_digits=False
                )
            )
        if self.currency == "JPY" or abs(number) >= 1000:
            return str(
                format_currency(
                    _unsigned_zero(number, 0), self.currency, format="¤#,##0", locale=self.locale, currency_digits=False
                )
            )
        places = get_currency_precision(self.currency)
        return str(format_currency(_unsigned_zero(number, places), self.currency, locale=self.locale))

    def seconds(self, value: Real | None) -> str:
        number = as_decimal(value)
        if number is None or number.is_infinite():
            return DASH
        if number < 1:
            return self.template("units.milliseconds").format(value=self.integer(number * 1000))
        return self.template("units.seconds").format(value=self.decimal(number, 2))

    def bytes(self, value: Real | None) -> str:
        number = as_decimal(value)
        if not number or number.is_infinite():  # None and 0: not measured
            return DASH
        for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
            if number < 1024 or unit == "TiB":
                return f"{self.integer(number)} {unit}" if unit == "B" else f"{self.decimal(number, 1)} {unit}"
            number /= 1024
        raise AssertionError("unreachable: the last unit returns")

    def parameters(self, value: Real | None) -> str:
        """A model size as engineers write it in both languages: 270M, 1.60B."""
        number = as_decimal(value)
        if not number or number.is_infinite():
            return DASH
        if number >= BILLION:
            return f"{self.decimal(number / BILLION, 2)}B"
        return f"{self.integer(number / MILLION)}M"

    def count(self, value: Real | None) -> str:
        """A parameter count or an item count: 1.60B, 270M or 1,234."""
        number = as_decimal(value)
        if number is None:
            return DASH
        return self.parameters(number) if number >= MILLION else self.integer(number)

    def datetime(self, moment: _dt.datetime) -> str:
        return str(format_datetime(moment, "medium", locale=self.locale))
