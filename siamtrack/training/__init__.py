"""Training: SiamFC's loss, the resumable trainer (AMP, DDP) and the stage protocol the pipeline
implements. Imports: models, checkpoint, config."""
from .losses import balanced_logistic_loss, logistic_labels
from .trainer import DistEnv, Trainer, setup_distributed, siamfc_loss

__all__ = ["DistEnv", "Trainer", "balanced_logistic_loss", "logistic_labels", "setup_distributed",
           "siamfc_loss"]
