"""Layer 1 of classification: steward-written rules over column and dataset names, plus
recognisers over sample values.

L1 is the layer that is always on and must be cheap enough to run on every column of every
event (the target is p99 < 50 µs per column), so everything that can be done once is done when
the rules are loaded:

* every phrase of every rule is normalised once and put in **one dictionary** keyed by the
  phrase text, so a name is matched by looking up its word n-grams (a handful of dictionary
  probes) instead of looping over the rules;
* the regexes of a scope are joined into one alternation used as a pre-filter, so a name that
  matches none of them costs one ``search``;
* results for a name are memoised (``lru_cache``): warehouses repeat column names endlessly.

Names are read the way people write them: ``customerEmail``, ``cust_email_addr``, ``E-Mail``,
``EMAIL_ADDRESS``, ``emailAddress`` and ``e.mail`` all become words that contain ``email``
(case changes, separators and digits split words; abbreviations from the rules file expand;
plurals reduce to a known singular; run-together words split when every piece is known).

Two kinds of rule let L1 settle ordinary columns without overruling the specific ones:

* a **fallback** rule (``fallback: true``) names the *shape* of a business column - a record
  key, a timestamp, a flag, a status - and counts only when no other rule matched, so that
  ``customer_id`` stays a customer key, ``birth_date`` a birth date and ``country_code`` public
  reference data, however generic their last word is;
* a rule with ``when_dataset`` and no pattern matches **every column** of a dataset whose name
  contains one of its phrases (all columns of a ``reference`` or ``open data`` table are
  published), still combined with the other matches like any rule.

Negative rules keep L1 honest: a rule with ``suppresses`` (hashed/masked values, aggregates)
*neutralises* the other matches that carry those tags - they lose the tags and are capped at the
negative rule's tier - and both the match and the neutralisation appear in the evidence. Sample
values can only raise what the name found, never lower it (a column named ``email_sha256`` that
holds plain addresses is PII again).

>>> clf = HeuristicClassifier.from_file()
>>> clf.classify_column("cust_email_addr").describe()
'PROPRIETARY, tags: GDPR, PII'
>>> clf.classify_column("email_sha256").describe()
'INTERNAL, tags: ANONYMIZED'
>>> [e.source for e in clf.classify_column("customerEmail").evidence]
['email']
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lacuna_orchestration.classify.values import recognize_values
from lacuna_orchestration.errors import ClassificationError, ValidationError
from lacuna_orchestration.model import (
    Classification,
    DatasetRef,
    Evidence,
    Layer,
    Tier,
    normalize_tag,
)

if TYPE_CHECKING:
    from lacuna_orchestration.classify.pipeline import ColumnContext

__all__ = [
    "DEFAULT_RULES_FILE",
    "HeuristicClassifier",
    "NameNormalizer",
    "Rule",
    "RuleSet",
    "ValueSettings",
    "load_rules",
    "roll_up_dataset",
]

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "rules" / "default.yaml"
"""The bundled rules, used when no ``rules_file`` is configured."""

COLUMN = "column"
DATASET = "dataset"
NO_MATCH_REASONING = "no heuristic rule matched"

# -- rules --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One steward-written rule, as read from the rules file (see its header for the fields)."""

    id: str
    tier: Tier
    tags: frozenset[str]
    confidence: float
    applies_to: frozenset[str]
    description: str = ""
    words: tuple[str, ...] = ()
    regex: tuple[str, ...] = ()
    raw_regex: tuple[str, ...] = ()
    data_types: tuple[str, ...] = ()
    when_dataset: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exclude_regex: tuple[str, ...] = ()
    suppresses: frozenset[str] = frozenset()
    cap_tier: Tier | None = None
    fallback: bool = False

    @property
    def dataset_wide(self) -> bool:
        """A ``when_dataset`` rule without patterns: it matches every column of the datasets
        its phrases name."""
        return bool(self.when_dataset) and not (
            self.words or self.regex or self.raw_regex or self.data_types
        )

    @property
    def neutralised_tier(self) -> Tier:
        """The tier this (negative) rule caps the matches it neutralises at."""
        return self.cap_tier if self.cap_tier is not None else self.tier


@dataclass(frozen=True, slots=True)
class ValueSettings:
    """How sample values are judged (the ``values`` section of the rules file)."""

    min_ratio: float = 0.6
    max_samples: int = 1000
    min_age: int = 16
    max_age: int = 100


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A whole rules file: rules plus the vocabulary the name normaliser needs."""

    source: str
    rules: tuple[Rule, ...]
    abbreviations: Mapping[str, str]
    vocabulary: tuple[str, ...] = ()
    no_match_confidence: float = 0.3
    values: ValueSettings = ValueSettings()


_TOP_FIELDS = frozenset(
    {"version", "no_match_confidence", "values", "abbreviations", "vocabulary", "rules"}
)
_RULE_FIELDS = frozenset(
    {
        "id",
        "description",
        "applies_to",
        "words",
        "regex",
        "raw_regex",
        "data_types",
        "when_dataset",
        "exclude",
        "exclude_regex",
        "tier",
        "tags",
        "confidence",
        "suppresses",
        "cap_tier",
        "fallback",
    }
)
_PATTERN_FIELDS = ("words", "regex", "raw_regex", "data_types")
_APPLIES = {
    "column": frozenset({COLUMN}),
    "dataset": frozenset({DATASET}),
    "both": frozenset({COLUMN, DATASET}),
}
_VALUE_FIELDS = {"min_ratio": float, "max_samples": int, "min_age": int, "max_age": int}
_RULE_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")


class _RulesFile:
    """Reads one rules file and turns every problem into a one-line ``ClassificationError``
    that names the file, the rule and what is wrong."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, problem: str, rule: str | None = None) -> ClassificationError:
        where = f"rules file {self.path}" + (f", rule {rule!r}" if rule else "")
        return ClassificationError(f"{where}: {problem}")

    def load(self) -> RuleSet:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as err:
            raise self.fail(f"cannot read it ({err.strerror or err})") from err
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise self.fail(f"not valid YAML{at}: {problem}") from err
        if not isinstance(data, dict):
            raise self.fail("must hold a mapping with a 'rules' list")
        unknown = sorted(set(map(str, data)) - _TOP_FIELDS)
        if unknown:
            raise self.fail(
                f"unknown section {unknown[0]!r}; valid: {', '.join(sorted(_TOP_FIELDS))}"
            )
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list) or not raw_rules:
            raise self.fail("'rules' must be a non-empty list")
        rules: list[Rule] = []
        seen: set[str] = set()
        for number, raw in enumerate(raw_rules, start=1):
            rule = self._rule(raw, number)
            if rule.id in seen:
                raise self.fail("duplicate rule id", rule.id)
            seen.add(rule.id)
            rules.append(rule)
        return RuleSet(
            source=str(self.path),
            rules=tuple(rules),
            abbreviations=self._abbreviations(data.get("abbreviations")),
            vocabulary=self._texts(data.get("vocabulary"), "vocabulary", None),
            no_match_confidence=self._confidence(
                data.get("no_match_confidence", 0.3), "no_match_confidence", None
            ),
            values=self._values(data.get("values")),
        )

    def _rule(self, raw: Any, number: int) -> Rule:
        if not isinstance(raw, dict):
            raise self.fail(f"rule #{number} must be a mapping of fields")
        rule_id = raw.get("id")
        if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
            raise self.fail(f"rule #{number} needs an 'id' of letters, digits and _ . : -")
        unknown = sorted(set(map(str, raw)) - _RULE_FIELDS)
        if unknown:
            raise self.fail(
                f"unknown field {unknown[0]!r}; valid fields: {', '.join(sorted(_RULE_FIELDS))}",
                rule_id,
            )
        applies = raw.get("applies_to", "column")
        if applies not in _APPLIES:
            raise self.fail(f"applies_to must be column, dataset or both, not {applies!r}", rule_id)
        if "tier" not in raw:
            raise self.fail("missing 'tier'", rule_id)
        if "confidence" not in raw:
            raise self.fail("missing 'confidence'", rule_id)
        texts = {
            f: self._texts(raw.get(f), f, rule_id)
            for f in (
                "words",
                "regex",
                "raw_regex",
                "data_types",
                "when_dataset",
                "exclude",
                "exclude_regex",
            )
        }
        if not any(texts[f] for f in _PATTERN_FIELDS) and not texts["when_dataset"]:
            raise self.fail(
                f"needs at least one of {', '.join(_PATTERN_FIELDS)} (or when_dataset alone, "
                "to match every column of such datasets)",
                rule_id,
            )
        for field_name in ("regex", "raw_regex", "exclude_regex"):
            for pattern in texts[field_name]:
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise self.fail(f"{field_name} {pattern!r} does not compile: {err}", rule_id)
        if texts["when_dataset"] and applies == "dataset":
            raise self.fail("when_dataset only applies to column rules", rule_id)
        cap = raw.get("cap_tier")
        fallback = raw.get("fallback", False)
        if not isinstance(fallback, bool):
            raise self.fail(f"fallback must be true or false, not {fallback!r}", rule_id)
        if fallback and raw.get("suppresses"):
            raise self.fail(
                "a fallback rule cannot suppress: it only counts when no other rule matched",
                rule_id,
            )
        return Rule(
            id=rule_id,
            description=" ".join(str(raw.get("description", "")).split()),
            applies_to=_APPLIES[applies],
            tier=self._tier(raw["tier"], "tier", rule_id),
            tags=self._tags(raw.get("tags"), "tags", rule_id),
            confidence=self._confidence(raw["confidence"], "confidence", rule_id),
            words=texts["words"],
            regex=texts["regex"],
            raw_regex=texts["raw_regex"],
            data_types=tuple(_base_type(t) or t for t in texts["data_types"]),
            when_dataset=texts["when_dataset"],
            exclude=texts["exclude"],
            exclude_regex=texts["exclude_regex"],
            suppresses=self._tags(raw.get("suppresses"), "suppresses", rule_id),
            cap_tier=None if cap is None else self._tier(cap, "cap_tier", rule_id),
            fallback=fallback,
        )

    def _tier(self, value: Any, field_name: str, rule_id: str) -> Tier:
        try:
            return Tier.parse(value)
        except ValidationError as err:
            raise self.fail(f"{field_name}: {err}", rule_id) from None

    def _tags(self, value: Any, field_name: str, rule_id: str) -> frozenset[str]:
        try:
            return frozenset(normalize_tag(t) for t in self._texts(value, field_name, rule_id))
        except ValidationError as err:
            raise self.fail(f"{field_name}: {err}", rule_id) from None

    def _confidence(self, value: Any, field_name: str, rule_id: str | None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise self.fail(f"{field_name} must be a number from 0 to 1, not {value!r}", rule_id)
        return float(value)

    def _texts(self, value: Any, field_name: str, rule_id: str | None) -> tuple[str, ...]:
        if value is None:
            return ()
        items = [value] if isinstance(value, (str, int, float)) else value
        if not isinstance(items, list):
            raise self.fail(f"{field_name} must be a list of text", rule_id)
        out = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise self.fail(
                    f"{field_name} item {item!r} is not text (quote YAML words such as "
                    f"no, yes, on, off)",
                    rule_id,
                )
            text = str(item).strip()
            if not text:
                raise self.fail(f"{field_name} has an empty item", rule_id)
            out.append(text)
        return tuple(out)

    def _abbreviations(self, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail("'abbreviations' must map an abbreviation to its expansion")
        out = {}
        for key, expansion in value.items():
            if not isinstance(key, str) or not isinstance(expansion, str) or not expansion.strip():
                raise self.fail(
                    f"abbreviation {key!r}: {expansion!r} must be text to text (quote YAML "
                    f"keys such as no, yes, on, off)"
                )
            out[key.strip().lower()] = expansion.strip()
        return out

    def _values(self, value: Any) -> ValueSettings:
        if value is None:
            return ValueSettings()
        if not isinstance(value, dict):
            raise self.fail("'values' must be a mapping")
        settings: dict[str, Any] = {}
        for key, item in value.items():
            kind = _VALUE_FIELDS.get(str(key))
            if kind is None:
                raise self.fail(
                    f"unknown values setting {key!r}; valid: {', '.join(_VALUE_FIELDS)}"
                )
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise self.fail(f"values.{key} must be a number, not {item!r}")
            settings[str(key)] = kind(item)
        result = ValueSettings(**settings)
        if not 0 < result.min_ratio <= 1 or result.max_samples < 1:
            raise self.fail("values.min_ratio must be in (0, 1] and values.max_samples >= 1")
        if not 0 <= result.min_age <= result.max_age:
            raise self.fail("values.min_age must be >= 0 and <= values.max_age")
        return result


def load_rules(path: str | os.PathLike[str] | None = None) -> RuleSet:
    """Read and validate a rules file (``None`` = the bundled ``rules/default.yaml``)."""
    return _RulesFile(Path(path) if path is not None else DEFAULT_RULES_FILE).load()


# -- names --------------------------------------------------------------------------------

# Words: an upper-case run before a capitalised word (IP|Address), a capitalised or lower-case
# word, an upper-case run, a number. Non-ASCII letters count as lower case.
_WORD = re.compile(r"[A-Z]+(?=[A-Z][^\W\d_A-Z])|[A-Z]?[^\W\d_A-Z]+|[A-Z]+|\d+")
# Short words that may still be a piece of a run-together name (userid, clientip, phoneno).
_SHORT_PIECES = frozenset({"id", "ip", "ssn", "zip", "dob", "pan", "iban", "dna"})
_MIN_PIECE = 4
_MIN_SEGMENTED = 6
_MAX_SEGMENTED = 48  # real run-together names are short; longer words are not split (cost)


def _simple_words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


class NameNormalizer:
    """Turns a raw column or dataset name into the words the rules are written in.

    >>> n = NameNormalizer({"cust": "customer", "addr": "address"}, ["customer", "email"])
    >>> n.tokens("cust_email_addr"), n.tokens("customerEmails"), n.tokens("useremail")
    (('customer', 'email', 'address'), ('customer', 'email'), ('useremail',))
    """

    def __init__(
        self,
        abbreviations: Mapping[str, str],
        vocabulary: Iterable[str],
        *,
        cache_size: int = 1 << 15,
    ) -> None:
        self._abbreviations = {k.lower(): tuple(_simple_words(v)) for k, v in abbreviations.items()}
        vocab = {w for text in vocabulary for w in _simple_words(text)}
        vocab |= set(self._abbreviations)
        vocab |= {w for expansion in self._abbreviations.values() for w in expansion}
        self._vocab = frozenset(vocab)
        self._pieces = frozenset(
            {w for w in vocab if len(w) >= _MIN_PIECE}
            | {k for k in self._abbreviations if len(k) >= 2}
            | _SHORT_PIECES
        )
        self._longest_piece = max((len(p) for p in self._pieces), default=0)
        self.word = lru_cache(maxsize=cache_size)(self._word)

    @property
    def vocabulary(self) -> frozenset[str]:
        return self._vocab

    def tokens(self, name: str) -> tuple[str, ...]:
        word = self.word
        out: list[str] = []
        for raw in _WORD.findall(name):
            out.extend(word(raw.lower()))
        return tuple(out)

    def _word(self, word: str) -> tuple[str, ...]:
        """One raw lower-case word → the normalised words it stands for."""
        expansion = self._abbreviations.get(word)
        if expansion is not None:
            return expansion
        singular = self._singular(word)
        if singular is not None:
            return self._abbreviations.get(singular, (singular,))
        if (
            word in self._vocab
            or word.isdigit()
            or not _MIN_SEGMENTED <= len(word) <= _MAX_SEGMENTED
        ):
            return (word,)
        pieces = self._segment(word)
        if pieces is None and word.endswith("s"):
            pieces = self._segment(word[:-1])
        if pieces is None:
            return (word,)
        return tuple(w for p in pieces for w in self._abbreviations.get(p, (p,)))

    def _singular(self, word: str) -> str | None:
        if len(word) < 3 or not word.endswith("s"):
            return None
        candidates = [word[:-1]]
        if word.endswith("es"):
            candidates.insert(0, word[:-2])
        if word.endswith("ies"):
            candidates.insert(0, word[:-3] + "y")
        for stem in candidates:
            # a stem must be a word, not an abbreviation: "sales" is not "sal" (salary)
            if len(stem) >= 2 and stem in self._vocab and stem not in self._abbreviations:
                return stem
        return None

    def _segment(self, word: str) -> tuple[str, ...] | None:
        """Split a run-together word into known pieces (fewest pieces wins), or ``None``.

        Pieces are known words of four letters or more, abbreviations and a few short
        identifiers: short dictionary words would split ``postage`` into ``post`` + ``age``.
        """
        size = len(word)
        pieces = self._pieces
        best: list[tuple[str, ...] | None] = [None] * (size + 1)
        best[0] = ()
        for start in range(size):
            current = best[start]
            if current is None:
                continue
            for end in range(start + 2, min(size, start + self._longest_piece) + 1):
                piece = word[start:end]
                if piece in pieces:
                    candidate = current + (piece,)
                    known = best[end]
                    if known is None or len(candidate) < len(known):
                        best[end] = candidate
        result = best[size]
        return result if result is not None and len(result) > 1 else None


def _base_type(data_type: str | None) -> str | None:
    """``VARCHAR(255)`` → ``varchar``, ``inet[]`` → ``inet``; ``None`` stays ``None``."""
    if not data_type:
        return None
    return data_type.strip().lower().split("(", 1)[0].removesuffix("[]").strip() or None


def _dataset_parts(dataset: str | DatasetRef) -> tuple[str, str]:
    """(namespace, name) of a ``DatasetRef``, a ``namespace::name`` key or a bare name."""
    if isinstance(dataset, DatasetRef):
        return dataset.namespace, dataset.name
    namespace, sep, name = str(dataset).partition("::")
    return (namespace, name) if sep else ("", str(dataset))


# -- matching -----------------------------------------------------------------------------


def _combined(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One alternation of many regexes, used only to skip the per-rule loop when none can
    match; ``None`` (no pre-filter) if the patterns cannot be joined (e.g. back-references)."""
    parts = [f"(?:{p})" for p in patterns]
    if not parts:
        return None
    try:
        return re.compile("|".join(parts))
    except re.error:
        return None


_Hit = tuple[int, tuple[str, ...]]  # rule index, what matched


class _Scope:
    """The compiled rules of one scope (columns or datasets)."""

    def __init__(self, rules: Sequence[Rule], normalizer: NameNormalizer) -> None:
        self.rules = tuple(rules)
        self.index: dict[str, list[tuple[int, bool]]] = {}
        self.longest = 1
        for i, rule in enumerate(self.rules):
            for phrase in rule.words:
                self._add(normalizer.tokens(phrase), i, negative=False)
            for phrase in rule.exclude:
                self._add(normalizer.tokens(phrase), i, negative=True)
        self.context_keys = {
            i: frozenset(" ".join(normalizer.tokens(p)) for p in rule.when_dataset)
            for i, rule in enumerate(self.rules)
            if rule.when_dataset
        }
        self.longest = max(
            [self.longest] + [len(normalizer.tokens(p)) for r in self.rules for p in r.when_dataset]
        )
        self.dataset_wide = tuple(i for i, rule in enumerate(self.rules) if rule.dataset_wide)
        self.fallbacks = frozenset(i for i, rule in enumerate(self.rules) if rule.fallback)
        self.types: dict[str, list[int]] = {}
        for i, rule in enumerate(self.rules):
            for data_type in rule.data_types:
                self.types.setdefault(data_type, []).append(i)
        self.regex = self._compile(lambda r: r.regex, re.IGNORECASE)
        self.raw_regex = self._compile(lambda r: r.raw_regex, re.IGNORECASE)
        self.exclude_regex = self._compile(lambda r: r.exclude_regex, re.IGNORECASE)

    def _add(self, words: tuple[str, ...], rule: int, *, negative: bool) -> None:
        if not words:
            return
        keys = {" ".join(words), "".join(words)}
        for key in keys:
            entries = self.index.setdefault(key, [])
            if (rule, negative) not in entries:
                entries.append((rule, negative))
        self.longest = max(self.longest, len(words))

    def _compile(
        self, field: Any, flags: int
    ) -> tuple[re.Pattern[str] | None, tuple[tuple[int, tuple[re.Pattern[str], ...]], ...]]:
        per_rule = tuple(
            (i, tuple(re.compile(p, flags) for p in field(rule)))
            for i, rule in enumerate(self.rules)
            if field(rule)
        )
        everything = [p.pattern for _, patterns in per_rule for p in patterns]
        prefilter = _combined(everything)
        return (re.compile(prefilter.pattern, flags) if prefilter else None), per_rule

    def grams(self, words: tuple[str, ...]) -> set[str]:
        """Every n-gram key of ``words`` (spaced and run together), up to the longest phrase."""
        keys: set[str] = set(words)
        size = len(words)
        for start in range(size):
            for end in range(start + 2, min(size, start + self.longest) + 1):
                part = words[start:end]
                keys.add(" ".join(part))
                keys.add("".join(part))
        return keys

    def match(
        self,
        words: tuple[str, ...],
        raw: str,
        data_type: str | None,
        context: frozenset[int],
    ) -> list[_Hit]:
        index = self.index
        found: dict[int, list[str]] = {}
        vetoed: set[int] = set()
        size = len(words)
        longest = self.longest
        for start in range(size):
            word = words[start]
            entries = index.get(word)
            if entries:
                _record(entries, repr(word), found, vetoed)
            for end in range(start + 2, min(size, start + longest) + 1):
                part = words[start:end]
                key = " ".join(part)
                entries = index.get(key)
                if entries:
                    _record(entries, repr(key), found, vetoed)
                joined = "".join(part)
                entries = index.get(joined)
                if entries:
                    _record(entries, repr(joined), found, vetoed)
        text = " ".join(words)
        prefilter, per_rule = self.regex
        if prefilter is not None and prefilter.search(text):
            for i, patterns in per_rule:
                for pattern in patterns:
                    if pattern.search(text):
                        found.setdefault(i, []).append(f"regex /{pattern.pattern}/")
        prefilter, per_rule = self.raw_regex
        if prefilter is not None and prefilter.search(raw):
            for i, patterns in per_rule:
                for pattern in patterns:
                    if pattern.search(raw):
                        found.setdefault(i, []).append(f"raw regex /{pattern.pattern}/")
        if data_type is not None:
            for i in self.types.get(data_type, ()):
                found.setdefault(i, []).append(f"data type {data_type!r}")
        if context:
            for i in self.dataset_wide:
                if i in context:
                    found.setdefault(i, []).append("its dataset's name")
        if not found:
            return []
        prefilter, per_rule = self.exclude_regex
        if prefilter is not None and prefilter.search(text):
            for i, patterns in per_rule:
                if any(p.search(text) for p in patterns):
                    vetoed.add(i)
        context_keys = self.context_keys
        live = [
            i for i in sorted(found) if i not in vetoed and (i not in context_keys or i in context)
        ]
        if self.fallbacks:
            # a specific rule knows this column: the generic shape rules stay silent
            specific = [i for i in live if i not in self.fallbacks]
            if specific:
                live = specific
        return [(i, tuple(dict.fromkeys(found[i]))) for i in live]

    def context(self, dataset_words: tuple[str, ...]) -> frozenset[int]:
        """The rules whose ``when_dataset`` phrases occur in a dataset's name."""
        if not self.context_keys:
            return frozenset()
        keys = self.grams(dataset_words)
        return frozenset(i for i, wanted in self.context_keys.items() if wanted & keys)


def _record(
    entries: list[tuple[int, bool]], what: str, found: dict[int, list[str]], vetoed: set[int]
) -> None:
    for rule, negative in entries:
        if negative:
            vetoed.add(rule)
        else:
            found.setdefault(rule, []).append(what)


# -- the classifier -----------------------------------------------------------------------


class HeuristicClassifier:
    """L1: rules over names (and data types), recognisers over sample values.

    Build it once (``from_file``) and share it: it is immutable after construction and its
    caches are thread-safe.
    """

    layer = Layer.HEURISTIC

    def __init__(self, rules: RuleSet, *, cache_size: int = 1 << 16) -> None:
        self.rules = rules
        words = [p for r in rules.rules for p in (*r.words, *r.exclude, *r.when_dataset)]
        self.normalizer = NameNormalizer(
            rules.abbreviations, [*words, *rules.vocabulary], cache_size=cache_size
        )
        self._columns = _Scope([r for r in rules.rules if COLUMN in r.applies_to], self.normalizer)
        self._datasets = _Scope(
            [r for r in rules.rules if DATASET in r.applies_to], self.normalizer
        )
        self._no_match = rules.no_match_confidence
        self._values = rules.values
        self._by_name = lru_cache(maxsize=cache_size)(self._classify_name)
        self._context = lru_cache(maxsize=4096)(self._dataset_context)
        self._dataset_name = lru_cache(maxsize=4096)(self._classify_dataset_name)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str] | None = None, *, cache_size: int = 1 << 16
    ) -> HeuristicClassifier:
        """Load a rules file (``None`` = the bundled one); a bad file raises
        ``ClassificationError`` naming the file, the rule and the problem."""
        return cls(load_rules(path), cache_size=cache_size)

    # -- columns ------------------------------------------------------------------------

    def classify_column(
        self,
        name: str,
        *,
        data_type: str | None = None,
        description: str | None = None,
        dataset: str | DatasetRef | None = None,
        samples: Iterable[object] | None = None,
    ) -> Classification:
        """Classify one column by its name, data type, dataset context and sample values.

        ``description`` is accepted for the cascade's sake but not matched: descriptions are
        prose ("not the customer's email") where word rules mislead; L2/L3 read them.
        """
        del description
        context = self._context(_dataset_parts(dataset)[1]) if dataset is not None else _NONE
        result = self._by_name(name, _base_type(data_type), context)
        if samples is not None:
            result = self._with_values(result, name, samples)
        return result

    def classify_columns(
        self,
        names: Iterable[str],
        *,
        dataset: str | DatasetRef | None = None,
        data_types: Mapping[str, str] | None = None,
    ) -> list[Classification]:
        """Classify many columns of one dataset, in order."""
        types = data_types or {}
        return [self.classify_column(n, data_type=types.get(n), dataset=dataset) for n in names]

    def classify_many(self, items: Sequence[ColumnContext]) -> list[Classification]:
        """The cascade's entry point (``ClassificationLayer``)."""
        return [
            self.classify_column(
                item.name,
                data_type=item.data_type,
                dataset=item.dataset_name or item.dataset_key,
                samples=item.samples or None,
            )
            for item in items
        ]

    # -- datasets -----------------------------------------------------------------------

    def classify_dataset_name(self, dataset: str | DatasetRef) -> Classification:
        """The dataset rules alone: name words (``customers``, ``crm.contacts``) and path
        patterns over the namespace and name (``/public/``)."""
        return self._dataset_name(*_dataset_parts(dataset))

    def classify_dataset(
        self,
        dataset: str | DatasetRef,
        columns: Iterable[str] | Mapping[str, Classification] = (),
    ) -> Classification:
        """Dataset rules plus its columns (names, or classifications already made): the tier
        is the maximum of all of them and the tags their union."""
        own = self.classify_dataset_name(dataset)
        if isinstance(columns, Mapping):
            per_column = dict(columns)
        else:
            per_column = {c: self.classify_column(c, dataset=dataset) for c in columns}
        namespace, name = _dataset_parts(dataset)
        target = f"{namespace}::{name}" if namespace else name
        return roll_up_dataset(target, own, per_column, no_match_confidence=self._no_match)

    # -- caches -------------------------------------------------------------------------

    def cache_info(self) -> dict[str, Any]:
        return {
            "names": self._by_name.cache_info(),
            "words": self.normalizer.word.cache_info(),
            "datasets": self._dataset_name.cache_info(),
        }

    def clear_caches(self) -> None:
        """Forget memoised results (benchmarks use it to measure the uncached path)."""
        self._by_name.cache_clear()
        self._context.cache_clear()
        self._dataset_name.cache_clear()
        self.normalizer.word.cache_clear()

    # -- internals ----------------------------------------------------------------------

    def _classify_name(
        self, name: str, data_type: str | None, context: frozenset[int]
    ) -> Classification:
        words = self.normalizer.tokens(name)
        hits = self._columns.match(words, name.lower(), data_type, context)
        return self._decide(self._columns, hits, name)

    def _dataset_context(self, dataset_name: str) -> frozenset[int]:
        return self._columns.context(self.normalizer.tokens(dataset_name))

    def _classify_dataset_name(self, namespace: str, name: str) -> Classification:
        words = self.normalizer.tokens(name)
        raw = f"{namespace.lower()}\n{name.lower()}" if namespace else name.lower()
        hits = self._datasets.match(words, raw, None, _NONE)
        target = f"{namespace}::{name}" if namespace else name
        return self._decide(self._datasets, hits, target)

    def _decide(self, scope: _Scope, hits: list[_Hit], target: str) -> Classification:
        if not hits:
            return Classification(
                Tier.PUBLIC, frozenset(), self._no_match, Layer.HEURISTIC, (), NO_MATCH_REASONING
            )
        rules = scope.rules
        shown = repr(target)
        suppressors = [rules[i] for i, _ in hits if rules[i].suppresses]
        if not suppressors:
            return self._decide_plain(rules, hits, target, shown)
        tiers: list[Tier] = []
        confidences: list[float] = []
        tags: set[str] = set()
        evidence: list[Evidence] = []
        notes: list[str] = []
        for i, what in hits:
            rule = rules[i]
            tier, rule_tags, confidence = rule.tier, rule.tags, rule.confidence
            detail = f"{shown} matched " + ", ".join(what)
            for negative in suppressors:
                dropped = rule_tags & negative.suppresses
                if negative is rule or not dropped:
                    continue
                rule_tags = rule_tags - negative.suppresses
                tier = min(tier, negative.neutralised_tier)
                confidence = min(confidence, negative.confidence)
                detail += (
                    f"; neutralised by {negative.id}: dropped {', '.join(sorted(dropped))}, "
                    f"tier at most {negative.neutralised_tier.name}"
                )
                notes.append(f"{rule.id} neutralised by {negative.id}")
            tiers.append(tier)
            confidences.append(confidence)
            tags |= rule_tags
            evidence.append(Evidence(Layer.HEURISTIC, rule.id, target, detail, confidence))
        top = max(tiers)
        confidence = max(c for t, c in zip(tiers, confidences, strict=True) if t == top)
        ids = ", ".join([rules[i].id for i, _ in hits])
        reasoning = f"{shown} matched heuristic rule(s) {ids}"
        if notes:
            reasoning += " (" + "; ".join(dict.fromkeys(notes)) + ")"
        return Classification(
            top,
            frozenset(tags),
            confidence,
            Layer.HEURISTIC,
            tuple(evidence),
            f"{reasoning} → {top.name}",
        )

    @staticmethod
    def _decide_plain(
        rules: tuple[Rule, ...], hits: list[_Hit], target: str, shown: str
    ) -> Classification:
        """``_decide`` when no negative rule matched - most names, so kept lean (the L1
        budget is per column): max tier, union of tags, the best confidence at that tier."""
        top = Tier.PUBLIC
        confidence = 0.0
        tags: set[str] = set()
        evidence = []
        for i, what in hits:
            rule = rules[i]
            evidence.append(
                Evidence(
                    Layer.HEURISTIC,
                    rule.id,
                    target,
                    f"{shown} matched {', '.join(what)}",
                    rule.confidence,
                )
            )
            tags |= rule.tags
            if rule.tier > top:
                top, confidence = rule.tier, rule.confidence
            elif rule.tier == top and rule.confidence > confidence:
                confidence = rule.confidence
        ids = ", ".join([rules[i].id for i, _ in hits])
        return Classification(
            top,
            frozenset(tags),
            confidence,
            Layer.HEURISTIC,
            tuple(evidence),
            f"{shown} matched heuristic rule(s) {ids} → {top.name}",
        )

    def _with_values(
        self, named: Classification, target: str, samples: Iterable[object]
    ) -> Classification:
        options = self._values
        matches = recognize_values(
            samples,
            min_ratio=options.min_ratio,
            max_samples=options.max_samples,
            min_age=options.min_age,
            max_age=options.max_age,
        )
        if not matches:
            return named
        value_tier = max(m.tier for m in matches)
        value_confidence = max(m.confidence for m in matches if m.tier == value_tier)
        tags = named.tags.union(*(m.tags for m in matches))
        found = "; ".join(m.describe() for m in matches)
        if not named.evidence:  # the name matched nothing: the values alone decide
            tier, confidence, reasoning = value_tier, value_confidence, f"sample values: {found}"
        else:
            tier = max(named.tier, value_tier)
            if value_tier > named.tier:
                confidence = value_confidence
            elif value_tier == named.tier:
                confidence = max(named.confidence, value_confidence)
            else:
                confidence = named.confidence
            reasoning = f"{named.reasoning}; sample values: {found}"
        evidence = named.evidence + tuple(m.evidence(target) for m in matches)
        return Classification(tier, tags, confidence, Layer.HEURISTIC, evidence, reasoning)


_NONE: frozenset[int] = frozenset()


def roll_up_dataset(
    target: str,
    own: Classification,
    columns: Mapping[str, Classification],
    *,
    no_match_confidence: float = 0.3,
) -> Classification:
    """A dataset's classification from its own (name) classification and its columns': the
    highest tier, every tag, all evidence; the confidence of the strongest part at that tier.

    Parts without evidence (nothing matched) do not count, so a dataset none of whose columns
    matched anything stays a low-confidence PUBLIC the cascade can question; a dataset with no
    columns at all and an unknown name is unclassified (``Classification.unknown``).
    """
    parts = [("its name", own)] + [(f"column {name!r}", c) for name, c in columns.items()]
    informative = [(what, c) for what, c in parts if c.evidence]
    if not informative and not columns:
        # No schema and a name no rule knows: nothing says this data is harmless. Unknown is
        # not PUBLIC — policies see the dataset as unclassified until a schema, a parent, a
        # declaration or a steward says what it holds.
        return Classification.unknown(
            f"{target}: no columns known and no rule matched its name: not classified yet"
        )
    if not informative:
        return Classification(
            Tier.PUBLIC,
            frozenset(),
            no_match_confidence,
            Layer.HEURISTIC,
            (),
            f"{NO_MATCH_REASONING} for the dataset name or any of its {len(columns)} column(s)",
        )
    tier = max(c.tier for _, c in informative)
    top = [(what, c) for what, c in informative if c.tier == tier]
    strongest = max(top, key=lambda part: part[1].confidence)[1]
    tags = frozenset().union(*(c.tags for _, c in informative))
    evidence = tuple(dict.fromkeys(e for _, c in informative for e in c.evidence))
    named = ", ".join(what for what, _ in top[:5])
    more = f" and {len(top) - 5} more" if len(top) > 5 else ""
    return Classification(
        tier,
        tags,
        strongest.confidence,
        strongest.layer,
        evidence,
        f"{target}: {tier.name} from {named}{more} (the maximum over its name and columns)",
    )
