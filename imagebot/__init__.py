"""imagebot: vetted requirement sets to locked JupyterLab images, promoted through GitOps."""

__version__ = "0.1.0"
