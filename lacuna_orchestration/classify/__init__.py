"""Classification: what a column or dataset is, with the evidence for it.

L1 (:mod:`.heuristics`, :mod:`.values`) matches steward-written rules against names and
recognises sensitive sample values; :mod:`.pipeline` runs the cascade L1 → L2 → L3 and keeps
every later answer at or above the L1 evidence.

>>> from lacuna_orchestration.classify import HeuristicClassifier
>>> HeuristicClassifier.from_file().classify_column("EMAIL_ADDRESS").tier.name
'PROPRIETARY'
"""

from lacuna_orchestration.classify.heuristics import (
    DEFAULT_RULES_FILE,
    HeuristicClassifier,
    NameNormalizer,
    Rule,
    RuleSet,
    ValueSettings,
    load_rules,
    roll_up_dataset,
)
from lacuna_orchestration.classify.pipeline import (
    DEFAULT_THRESHOLDS,
    CascadeClassifier,
    ClassificationLayer,
    ColumnContext,
)
from lacuna_orchestration.classify.values import ValueMatch, ValueRecognizer, recognize_values

__all__ = [
    "DEFAULT_RULES_FILE",
    "DEFAULT_THRESHOLDS",
    "CascadeClassifier",
    "ClassificationLayer",
    "ColumnContext",
    "HeuristicClassifier",
    "NameNormalizer",
    "Rule",
    "RuleSet",
    "ValueMatch",
    "ValueRecognizer",
    "ValueSettings",
    "load_rules",
    "recognize_values",
    "roll_up_dataset",
]
