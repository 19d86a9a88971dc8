"""Inference engines behind one small interface (:class:`Backend`)."""

from poccheck.backends.base import Backend, ChoiceRequest, GenerationRequest
from poccheck.backends.registry import load_backend

__all__ = ["Backend", "ChoiceRequest", "GenerationRequest", "load_backend"]
