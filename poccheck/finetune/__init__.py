"""Fine-tuning a small model: the split, LoRA training, the manifest and the export to GGUF."""
