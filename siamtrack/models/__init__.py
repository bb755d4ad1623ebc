"""Networks: backbones from layer dicts or registered types, the xcorr head, the Siamese net, its spec
and geometry, the inference rewrites and the torch engine. Imports: torch only (no siamtrack package)."""
from .backbones import ConvBlock, ConvStack, alexnet_layers, output_size
from .heads import XCorrHead, head_kind
from .siamese import (ARCHITECTURES, Geometry, SiamNet, alexnet_spec, build_configured, build_model,
                      count_parameters, exemplar_embedding, geometry, init_weights, model_spec, named_spec,
                      student_spec, validate_spec)

__all__ = ["ARCHITECTURES", "ConvBlock", "ConvStack", "Geometry", "SiamNet", "XCorrHead", "alexnet_layers",
           "alexnet_spec", "build_configured", "build_model", "count_parameters", "exemplar_embedding", "geometry",
           "head_kind", "init_weights", "model_spec", "named_spec", "output_size", "student_spec", "validate_spec"]
