"""Column names of task files: poccheck's standard names, the English and Japanese names accepted for them, a
suite's own names (its ``columns:`` setting), and finding the header row of a table below a title (pure; no I/O).

A header cell names a standard column when, compared without case, width (全角/半角) or spaces, it is the
standard name, one of :data:`COLUMN_NAMES`, or a name the suite maps. The same names are accepted as the keys
of YAML and JSON Lines items.
"""

from __future__ import annotations

import difflib
import itertools
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from poccheck.errors import Problem, did_you_mean

STANDARD_COLUMNS = ("id", "input", "type", "choices", "answer", "category", "tolerance", "schema", "metadata")
REQUIRED_COLUMNS = ("id", "input", "type")
# Other names for each standard column, as offices name them ("ID", "Ｉｄ" and "Answer" are the standard names).
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "id": ("問題ID", "設問ID", "問題番号", "設問番号", "番号", "項番"),
    "input": ("question", "prompt", "問題", "問題文", "設問", "設問文", "質問", "質問文", "入力"),
    "type": ("種類", "形式", "問題形式", "出題形式", "解答形式", "回答形式", "タイプ", "種別"),
    "choices": ("選択肢",),
    "answer": ("label", "正解", "正答", "答え", "解答", "模範解答"),
    "category": ("カテゴリ", "カテゴリー", "分類", "区分"),
    "tolerance": ("許容誤差", "許容差", "誤差"),
    "schema": ("スキーマ", "JSONスキーマ"),
    "metadata": ("メタデータ",),
}
HEADER_SCAN_ROWS = 10  # the header is looked for among this many rows from the first one that holds anything
CLOSE_MATCH = 0.5  # difflib ratio from which a header cell is offered as the closest match of a missing column
KEEP_AS_METADATA = "metadata"  # as a target of ``columns:``: keep the column as metadata under its own name


@lru_cache(maxsize=4096)
def column_key(name: str) -> str:
    """``name`` as compared: NFKC (full-width letters to half-width, half-width kana to full), no case, no spaces."""
    return "".join(unicodedata.normalize("NFKC", name).casefold().split())


ALIASES: dict[str, str] = {
    column_key(alias): standard for standard, aliases in COLUMN_NAMES.items() for alias in aliases
}
ColumnMap = Mapping[str, str]  # column_key(header name) -> standard column, or KEEP_AS_METADATA


def standard_column(name: str, columns: ColumnMap | None = None) -> str | None:
    """The standard column that header cell (or item key) ``name`` stands for, or None when it is none of them.

    The suite's ``columns`` come first, so a suite can also give a standard name another meaning; a column
    mapped to ``metadata`` stands for none (it is kept as metadata under its own name)."""
    key = column_key(name)
    if columns and key in columns:
        target = columns[key]
        return None if target == KEEP_AS_METADATA else target
    if key in STANDARD_COLUMNS:
        return key
    return ALIASES.get(key)


def parse_columns(value: Any) -> tuple[dict[str, str], list[tuple[str | None, str]]]:
    """Validate a suite's ``columns:`` setting, ``{header name: standard column}``: the map (keyed by
    :func:`column_key`) and, for each bad entry, its header name (None for the setting itself) and a message."""
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, [(None, "must be a mapping of header names to poccheck columns, e.g. {社内の列名: input}")]
    result: dict[str, str] = {}
    problems: list[tuple[str | None, str]] = []
    targets = ", ".join(STANDARD_COLUMNS)
    for name, target in value.items():
        if isinstance(name, bool) or not isinstance(name, str | int | float) or not column_key(str(name)):
            problems.append((None, f"header name {name!r} must be non-empty text"))
            continue
        if not isinstance(target, str) or not target.strip():
            problems.append((str(name), f"must name a poccheck column ({targets}), got {target!r}"))
            continue
        wanted = target.strip().lower()
        if wanted not in STANDARD_COLUMNS:
            alias = ALIASES.get(column_key(target))
            hint = f" (did you mean {alias!r}?)" if alias else did_you_mean(wanted, STANDARD_COLUMNS)
            problems.append((str(name), f"unknown column {target!r}{hint}; use one of {targets}"))
            continue
        key = column_key(str(name))
        if key in result and result[key] != wanted:
            problems.append((str(name), f"header name {name!r} is mapped twice"))
            continue
        result[key] = wanted
    return result, problems


@dataclass(frozen=True)
class HeaderRow:
    """Where the header of a table (CSV, TSV or a sheet) was found, and what its cells were read as.

    ``line`` is the file line (``unit`` "line") or sheet row (``unit`` "row") as the file shows it; the rows above
    it (a title, blank rows) were skipped. ``renamed`` pairs each header cell written otherwise than its standard
    column (``問題ID``, ``question``) with that column."""

    file: str
    line: int
    unit: Literal["line", "row"]
    renamed: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """``header on row 3 (rows 1-2 above it skipped); columns 問題ID → id, 問題 → input``."""
        text = f"header on {self.unit} {self.line}"
        if self.line > 1:
            above = f"{self.unit} 1" if self.line == 2 else f"{self.unit}s 1-{self.line - 1}"
            text += f" ({above} above it skipped)"
        if self.renamed:
            text += "; columns " + ", ".join(f"{cell} → {standard}" for cell, standard in self.renamed)
        return text


def missing_columns(present: Collection[str], provided: Collection[str] = ()) -> list[str]:
    """The required columns a header with columns ``present`` lacks; ``provided`` are fields the suite's
    ``defaults`` give every item. ``type`` may be left out when there is a ``choices`` column."""
    have = set(present) | set(provided)
    return [c for c in REQUIRED_COLUMNS if c not in have and not (c == "type" and "choices" in have)]


def find_header(
    rows: Sequence[Sequence[str]], columns: ColumnMap | None = None, provided: Collection[str] = ()
) -> tuple[int, list[str]]:
    """Which of ``rows`` (the first rows of a table, as text) is the header: the first that holds every required
    column (in any accepted name), with no missing columns; else the one with the most standard columns (the
    first non-blank row when none has any), with the required columns it lacks. ``rows`` holds at least one
    non-blank row."""
    best, best_count, best_missing = -1, -1, list(REQUIRED_COLUMNS)
    for index, cells in enumerate(rows):
        if not any(cell.strip() for cell in cells):
            continue
        present = {name for name in (standard_column(c, columns) for c in cells if c.strip()) if name}
        missing = missing_columns(present, provided)
        if not missing:
            return index, []
        if len(present) > best_count:
            best, best_count, best_missing = index, len(present), missing
    return best, best_missing


def header_problems(
    where: str,
    line: int,
    cells: Sequence[str],
    missing: Sequence[str],
    columns: ColumnMap | None = None,
) -> list[Problem]:
    """Problems of a header: one for the required columns it lacks (naming the columns found and the closest
    matches), else one for each standard column that two of its cells stand for."""
    written = [cell.strip() for cell in cells]
    if missing:
        return [Problem(where, line, None, _missing_message(written, missing, columns))]
    problems = []
    seen: dict[str, str] = {}
    for cell in written:
        name = standard_column(cell, columns) if cell else None
        if name is None:
            continue
        if name in seen and seen[name].lower() != cell.lower():  # the same name twice is the reader's to report
            problems.append(
                Problem(
                    where,
                    line,
                    cell,
                    f"columns {seen[name]!r} and {cell!r} both stand for {name}; rename one, or keep one as "
                    f"metadata with columns: {{{cell}: metadata}} in a suite file",
                )
            )
        seen.setdefault(name, cell)
    return problems


def _missing_message(cells: list[str], missing: Sequence[str], columns: ColumnMap | None) -> str:
    found = [cell for cell in cells if cell]
    shown = ", ".join(found[:20]) + (f", ... ({len(found) - 20} more)" if len(found) > 20 else "")
    unmatched = [cell for cell in dict.fromkeys(found) if standard_column(cell, columns) is None]
    closest = ", ".join(f"{cell} → {name}?" for name, cell in closest_columns(missing, unmatched, columns))
    return (
        f"the header has no column for {', '.join(missing)} (columns found: {shown or 'none'}"
        + (f"; closest: {closest}" if closest else "")
        + "); rename the header cells, or map them with columns: {header name: column} in a suite file "
        "that includes this one"
    )


def closest_columns(
    missing: Sequence[str], cells: Sequence[str], columns: ColumnMap | None = None
) -> list[tuple[str, str]]:
    """For each missing column, the header cell closest to one of its accepted names (difflib ratio at least
    :data:`CLOSE_MATCH`), each cell offered for one column only: of the three closest cells of each column, the
    choice matching the most columns, then the closest in all. In the order of ``missing``; a column with no cell
    close enough is left out."""
    options: list[list[tuple[float, str | None]]] = []
    for column in missing:
        names = [column, *(k for k, v in ALIASES.items() if v == column)]
        names += [k for k, v in (columns or {}).items() if v == column]
        scored = []
        for cell in cells:
            key = column_key(cell)
            score = max(difflib.SequenceMatcher(None, key, name).ratio() for name in names)
            if score >= CLOSE_MATCH:
                scored.append((score, cell))
        options.append([*sorted(scored, key=lambda s: -s[0])[:3], (0.0, None)])
    best: tuple[int, float] = (-1, 0.0)
    chosen: tuple[tuple[float, str | None], ...] = ()
    for combination in itertools.product(*options):
        picked = [cell for _, cell in combination if cell is not None]
        if len(set(picked)) < len(picked):
            continue
        rank = (len(picked), sum(score for score, _ in combination))
        if rank > best:
            best, chosen = rank, combination
    return [(column, cell) for column, (_, cell) in zip(missing, chosen, strict=False) if cell is not None]
