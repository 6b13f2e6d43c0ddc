"""Real-world photos: inputs (files, folders, CSVs, URLs, IIIF), preprocessing to 28x28, and ``predict``."""
