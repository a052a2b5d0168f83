import sys

from finetune.train.job import cli

sys.exit(cli())
