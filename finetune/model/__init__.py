"""The model side: what a model is made of, read from config.json alone (architecture.py), which of its
modules a LoRA setting adapts (targets.py), the exact count that follows (count.py), and loading the real
weights and tokenizer for a job (loading.py)."""
