"""Statistics and summaries over stored results."""

from poccheck.analysis.stats import Proportion, wilson
from poccheck.analysis.summary import Findings, ModelFindings, analyse

__all__ = ["Findings", "ModelFindings", "Proportion", "analyse", "wilson"]
