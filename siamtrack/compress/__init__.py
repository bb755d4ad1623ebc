"""Compression: distil the teacher into a student, prune channels to a MAC budget, and the student
stages the pipeline registers (:data:`.stages.STAGES`). Imports: training, models, checkpoint, config."""
from .distill import DistillModel, distill_loss, hint_loss, response_kd_loss
from .prune import channel_importance, prune_step, prune_to_widths, prune_units, select_keep

__all__ = ["DistillModel", "channel_importance", "distill_loss", "hint_loss", "prune_step",
           "prune_to_widths", "prune_units", "response_kd_loss", "select_keep"]
