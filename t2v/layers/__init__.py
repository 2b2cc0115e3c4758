"""Keras layers of t2v that are not bijectors."""

from t2v.layers.conv_lstm import ConvLSTMCell
from t2v.layers.residual3d import CausalConv3D, GatedActivation, ResidualBlock3D

__all__ = ["CausalConv3D", "ConvLSTMCell", "GatedActivation", "ResidualBlock3D"]
