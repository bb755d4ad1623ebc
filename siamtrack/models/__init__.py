"""Networks: width-parameterised backbones, the xcorr head, the Siamese net and its spec."""
from .backbones import ConvBlock, ConvStack, alexnet_layers, output_size
from .heads import XCorrHead
from .siamese import (ARCHITECTURES, SiamNet, alexnet_spec, build_model, count_parameters,
                      exemplar_embedding, init_weights, model_spec, named_spec, student_spec, validate_spec)

__all__ = ["ARCHITECTURES", "ConvBlock", "ConvStack", "SiamNet", "XCorrHead", "alexnet_layers",
           "alexnet_spec", "build_model", "count_parameters", "exemplar_embedding", "init_weights", "model_spec",
           "named_spec", "output_size", "student_spec", "validate_spec"]
