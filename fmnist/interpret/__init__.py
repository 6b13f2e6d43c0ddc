"""Explanations: Grad-CAM and the methods experts compare it with (Captum) and their checks.

Their figures are drawn in :mod:`fmnist.figures.explanations`; the commands are ``fmnist gradcam`` and
``fmnist explain-check`` (:mod:`fmnist.commands`).
"""

from fmnist.interpret.gradcam import GradCamResult, attribute, explain, grad_cam
from fmnist.interpret.layers import conv_layers, default_layer, resolve_layer
from fmnist.interpret.measures import mass_in, summarize_maps
from fmnist.interpret.methods import DEFAULT_METHOD, METHODS
from fmnist.interpret.selection import default_selection

__all__ = ["DEFAULT_METHOD", "METHODS", "GradCamResult", "attribute", "conv_layers", "default_layer",
           "default_selection", "explain", "grad_cam", "mass_in", "resolve_layer", "summarize_maps"]
