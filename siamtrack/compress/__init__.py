"""Compression: distil the teacher into a student and prune channels to a MAC budget."""
from .distill import DistillModel, distill_loss, hint_loss, response_kd_loss
from .prune import (channel_importance, masked_forward_equivalent, prune_step, prune_to_widths,
                    prune_units, select_keep)

__all__ = ["DistillModel", "channel_importance", "distill_loss", "hint_loss", "masked_forward_equivalent",
           "prune_step", "prune_to_widths", "prune_units", "response_kd_loss", "select_keep"]
