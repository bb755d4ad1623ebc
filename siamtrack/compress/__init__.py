"""Compression: distil the teacher into a student, prune channels to a MAC budget, and the student
stages the pipeline registers (:data:`.stages.STAGES`). Teacher and student may differ in backbone
(unpadded ConvStack or padded EfficientNet-Lite0) and head (xcorr or box); :mod:`.distill` aligns
their maps, :mod:`.prune_head` prunes a box head's towers. Imports: training, models, checkpoint, config."""
from .distill import (DistillModel, align_centres, box_kd_loss, distill_loss, ground_truth_loss, hint_loss,
                      response_kd_loss)
from .prune import channel_importance, prune_step, prune_to_widths, prune_units, select_keep, taylor_importance

__all__ = ["DistillModel", "align_centres", "box_kd_loss", "channel_importance", "distill_loss",
           "ground_truth_loss", "hint_loss", "prune_step", "prune_to_widths", "prune_units",
           "response_kd_loss", "select_keep", "taylor_importance"]
