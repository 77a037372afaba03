"""Every setting of the evaluation protocol, in one place (02_coop, 07_benchmark).

CoOp's base-to-new protocol as the papers run it: the class split and shots, the seeds, the
context's initial words, Dassl's SGD and schedule, GCSCoOp's published recipe (the recipe
of every CLIP but the tiny one) and the grid the tiny CLIP's shared recipe is tuned on.
Each method's own knobs and their grids live with the method (methods.METHODS).
"""
from __future__ import annotations

SHOTS = 16                    # training images per base class
SEEDS = (1, 2, 3)             # the papers' seeds: every table is a mean over these
CTX_INIT = "a photo of a"     # the learned context starts as these words (M = 4 tokens)
CLASS_POSITION = "end"        # [SOS] [V]_1 ... [V]_M [CLASS] [.] [EOS]

MOMENTUM = 0.9                # Dassl's SGD, for every method
WEIGHT_DECAY = 5e-4           # applied to the context vectors too
WARMUP_LR = 1e-5              # epoch 0 runs at this constant rate, then cosine from lr

# GCSCoOp's public recipe (ViT-B/16, 16 shots, M = 4 "a photo of a")
PAPER_RECIPE = {"lr": 0.002, "epochs": 200, "batch_size": 128}
# CoCoOp's own recipe (its text encoder runs once per image, hence batch 1)
COCOOP_RECIPE = {"lr": 0.002, "epochs": 10, "batch_size": 1}

# The tiny CLIP's shared recipe: chosen by CoOp's base validation accuracy over this grid
RECIPE_GRID = {"lr": [0.002, 0.01, 0.05, 0.2], "epochs": [25, 50, 100], "batch_size": [32]}
TUNING_SEEDS = SEEDS
MAX_EXTENSIONS = 2            # values a knob's grid may grow by when its choice sits on an edge
