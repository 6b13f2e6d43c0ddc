"""Explanations: Grad-CAM and the methods experts compare it with (Captum), their checks, figures and commands."""

from fmnist.figures.explanations import Explained, explained_items, save_figure, save_grid
from fmnist.interpret.gradcam import GradCamResult, attribute, explain, grad_cam
from fmnist.interpret.layers import conv_layers, default_layer, resolve_layer
from fmnist.interpret.measures import mass_in, summarize_maps
from fmnist.interpret.methods import DEFAULT_METHOD, METHODS
from fmnist.interpret.selection import default_selection

__all__ = ["DEFAULT_METHOD", "METHODS", "Explained", "GradCamResult", "attribute", "conv_layers", "default_layer",
           "default_selection", "explain", "explained_items", "grad_cam", "mass_in", "resolve_layer", "save_figure",
           "save_grid", "summarize_maps"]
