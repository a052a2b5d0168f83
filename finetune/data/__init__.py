"""Training data: reading files and Hub datasets into rows (files.py), and recognising and converting each
format to the shapes TRL's SFTTrainer takes (formats.py)."""
