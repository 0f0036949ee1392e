"""recmodels: attention-based recommenders trained on real interaction data, with every score explained."""
__version__ = "0.1.0"


def load(path, device="cpu"):
    """Rebuild a model from a checkpoint folder; returns ``(model, config)``."""
    from .checkpoint import load_checkpoint
    return load_checkpoint(path, device=device)
