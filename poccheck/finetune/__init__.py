"""Fine-tuning a small model: the split, LoRA training, the export to GGUF, and the whole run (run.py); the
adapter folder and its manifest are in poccheck.adapters."""
