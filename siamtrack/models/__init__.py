"""Networks: backbones from layer dicts or registered types, the head registry (xcorr, box), the
Siamese net, its spec and geometry, the inference rewrites and the torch engine.
Imports: torch and siamtrack.config (SiamFC's numbers: crop sizes, the head's output scale)."""
from .backbones import ConvBlock, ConvStack, alexnet_layers, output_size
from .heads import HEAD_TYPES, HeadType, XCorrHead, head_kind, head_type, register_head
from .siamese import (ARCHITECTURES, Geometry, SiamNet, alexnet_spec, build_configured, build_model,
                      count_parameters, exemplar_embedding, geometry, init_weights, model_spec, named_spec,
                      student_spec, validate_spec)

__all__ = ["ARCHITECTURES", "HEAD_TYPES", "ConvBlock", "ConvStack", "Geometry", "HeadType", "SiamNet",
           "XCorrHead", "alexnet_layers", "alexnet_spec", "build_configured", "build_model",
           "count_parameters", "exemplar_embedding", "geometry", "head_kind", "head_type", "init_weights",
           "model_spec", "named_spec", "output_size", "register_head", "student_spec", "validate_spec"]
