"""Networks written for ``torch.func.functional_call``: plain modules whose named parameters
are the model's state, with the structured masks that map a full-width model onto its
width-r sub-models (SPEC §2, Steps 1-2)."""

from rabo_bench.models.cnn import ConvNet, channel_mask, prefix_channel_mask

__all__ = ["ConvNet", "channel_mask", "prefix_channel_mask"]
