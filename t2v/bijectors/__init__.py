"""Flow bijectors of t2v: TFP bijectors whose parameters live in Keras 3 layers."""

from t2v.bijectors.actnorm import ActNorm, ActNormParams
from t2v.bijectors.base import FlowBijector
from t2v.bijectors.coupling import AdditiveCoupling, AffineCoupling, CouplingNet
from t2v.bijectors.flow_steps import FlowStep, FlowStepParams, FlowSteps
from t2v.bijectors.glow import MultiScaleGlow
from t2v.bijectors.invertible_conv import InvertibleConv1x1, InvertibleConvParams
from t2v.bijectors.reversible import reversible_chain
from t2v.bijectors.squeeze import Squeeze

__all__ = [
    "ActNorm", "ActNormParams", "AdditiveCoupling", "AffineCoupling", "CouplingNet", "FlowBijector", "FlowStep",
    "FlowStepParams", "FlowSteps", "InvertibleConv1x1", "InvertibleConvParams", "MultiScaleGlow", "Squeeze",
    "reversible_chain",
]
