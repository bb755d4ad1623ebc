#!/usr/bin/env python3
"""Train the teacher, then distil and prune it into the student: see siamtrack/pipeline.py.

    python experiments/train.py --config experiments/teacher.yaml [--resume] [key=value ...]
    torchrun --nproc_per_node 4 experiments/train.py --config experiments/teacher.yaml
"""
import sys

from siamtrack.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
