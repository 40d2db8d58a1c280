"""Test-wide settings: one torch thread (tiny models; avoids oversubscribing 2-core CI)."""

import torch

torch.set_num_threads(1)
