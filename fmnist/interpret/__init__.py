"""Explanations: Grad-CAM through Captum, the figures that show it, and the ``gradcam`` command."""

from fmnist.interpret.figures import Explained, explained_items, save_figure, save_grid
from fmnist.interpret.gradcam import GradCamResult, conv_layers, explain, grad_cam, mass_in, resolve_layer
from fmnist.interpret.selection import default_selection

__all__ = ["Explained", "GradCamResult", "conv_layers", "default_selection", "explain", "explained_items",
           "grad_cam", "mass_in", "resolve_layer", "save_figure", "save_grid"]
