#!/usr/bin/env python
"""Train the email agent with multi-turn GRPO: ``python train_grpo.py --mode masked``.

The same as ``inboxrl train``; every setting is a flag, an environment variable or a YAML key
(see ``python train_grpo.py --help`` and the README).
"""
import sys

from inboxrl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
