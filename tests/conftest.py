import torch

# Two cores here and in CI: keep torch from oversubscribing them when pytest runs things in parallel.
torch.set_num_threads(2)
