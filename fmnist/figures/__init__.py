"""Every static (matplotlib) figure the package draws, in one home; the callers hand it arrays and numbers.

- :mod:`fmnist.figures.evaluation`: confusion matrix, reliability diagram, error grid, comparison chart;
- :mod:`fmnist.figures.trust`: corruption accuracy, OOD score histograms and ROC curves;
- :mod:`fmnist.figures.explanations`: Grad-CAM-style overlays, grids and the explain-check plots;
- :mod:`fmnist.figures.photos`: the photo preprocessing steps figure.

Interactive plotly pages are not figures in this sense: the results page (:mod:`fmnist.reproduce.page`) and the
sweep report (:mod:`fmnist.sweep.report`) stay with the page they build.
"""
